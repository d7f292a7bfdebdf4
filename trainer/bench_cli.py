"""The `scaling bench` commands (throughput, gpu, gpu --matrix): argument parsing and output, over the
measuring code of trainer.bench and trainer.bench_matrix. torch is imported inside the commands."""
from __future__ import annotations

import math
import warnings
from dataclasses import replace

from scaling.errors import ConfigError
from scaling.shapes import DEMO, KNOWN
from trainer.bench import DEFAULT_VARIANTS, FEATURE_HELP, bench_gpu, bench_throughput, format_gpu, format_results, parse_variant


def _cmd_throughput(args) -> int:
    from scaling.atomic import check_out_file

    if args.json:  # before any work: a folder or an unwritable place is refused now, not after the run
        check_out_file(args.json, "--json")
    import torch

    from scaling import atomic
    from trainer.parallel import is_main

    if args.model not in KNOWN:
        raise ConfigError(f"unknown model '{args.model}'; known: {', '.join(KNOWN)}", field="model", value=args.model)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    shape, name = KNOWN[args.model], args.model
    if args.layers is not None:
        if not 1 <= args.layers <= shape.num_layers:
            raise ConfigError(f"must be between 1 and {shape.num_layers} for {args.model}", field="--layers", value=args.layers)
        shape, name = replace(shape, num_layers=args.layers), f"{args.model} ({args.layers} layers)"
    if device.type == "cpu" and args.model not in DEMO and not args.force:
        raise ConfigError(f"'{args.model}' is a published shape; on the CPU only the toy shapes ({', '.join(DEMO)}) are "
                          "sensible (pass --force to run it anyway)", field="model", value=args.model)
    variants = [x for x in args.variants.split(",") if x.strip()]
    for x in variants:
        parse_variant(x)
    def save(rows, final=False):  # after every variant: a killed run keeps what it measured
        if not final:
            print(format_results(rows[-1:]).splitlines()[2], flush=True)
        if args.json and is_main():
            atomic.write_json(args.json, {"model": name, "seq": args.seq, "device": str(device), "precision": args.precision,
                                          "complete": final, "results": rows})

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        rows = bench_throughput(shape, seq=args.seq, micro_batch=args.micro_batch, steps=args.steps,
                                warmup=args.warmup, device=device, variants=variants, accumulation=args.accumulation,
                                doc_mask=not args.no_doc_mask, seed=args.seed, chunk_size=args.chunk_size,
                                compile_backend=args.compile_backend, model_name=name, precision=args.precision,
                                on_result=save, profile=args.profile)
    save(rows, final=True)
    print(format_results(rows))
    bad = [r["variant"] for r in rows if not all(math.isfinite(x) for x in r["losses"])]
    if bad:
        print(f"error: non-finite loss in {', '.join(bad)}")
        return 1
    return 0


def add_throughput_arguments(t) -> None:
    t.add_argument("--model", required=True, help="a shape name: a published one (qwen2.5-0.5b, ...) or a toy one (toy-xs, ...)")
    t.add_argument("--seq", type=int, default=2048, help="tokens per sequence (default 2048)")
    t.add_argument("--micro-batch", type=int, default=1, help="sequences per forward pass (default 1)")
    t.add_argument("--accumulation", type=int, default=1, help="micro-batches per optimiser step")
    t.add_argument("--steps", type=int, default=10, help="timed optimiser steps (after warm-up)")
    t.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    t.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="comma-separated; each '+'-joined from: " + "; ".join(f"{k}: {v}" for k, v in FEATURE_HELP.items()))
    t.add_argument("--layers", type=int, help="keep only the first N decoder blocks of the shape (its width at a lower depth)")
    t.add_argument("--precision", default="amp-bf16", choices=("amp-bf16", "bf16"),
                   help="amp-bf16: fp32 master weights + bf16 autocast; bf16: bf16 weights and optimiser state")
    t.add_argument("--chunk-size", type=int, help="tokens per LM-head chunk (default: 4096 chunked, 8192 compiled)")
    t.add_argument("--compile-backend", default="inductor", help="torch.compile backend of compiled variants (aot_eager on a CPU without a compiler)")
    t.add_argument("--no-doc-mask", action="store_true", help="plain causal attention over the packed rows")
    t.add_argument("--device", help="default: cuda when available, else cpu")
    t.add_argument("--seed", type=int, default=0, help="seed of the random weights and batches")
    t.add_argument("--force", action="store_true", help="allow a published shape on the CPU")
    t.add_argument("--profile", action="store_true", help="two more steps per variant under torch.profiler (top kernels in the JSON)")
    t.add_argument("--json", help="also write the records here (rewritten after every variant)")
    t.set_defaults(func=_cmd_throughput)


def _cmd_gpu(args) -> int:
    from scaling.atomic import check_out_file

    if args.json:  # before any work: a folder or an unwritable place is refused now, not after the run
        check_out_file(args.json, "--json")
    from scaling import atomic
    from trainer.parallel import is_main

    if args.device == "cpu" and not args.tiny:
        raise ConfigError("the published shapes do not belong on a CPU; add --tiny", field="--device", value="cpu")
    if args.matrix:
        return _cmd_matrix(args)
    rec = bench_gpu(device=args.device, tiny=args.tiny, steps=args.steps, warmup=args.warmup, seed=args.seed)
    if not is_main():
        return 0
    print(format_gpu(rec))
    if args.json:
        for r in rec["single"] + [rec["fsdp"]]:
            r.pop("_model", None)
        atomic.write_json(args.json, rec)
    return 0 if rec["finite"] else 1


def register(sub) -> None:
    b = sub.add_parser("bench", help="benchmarks of the training step")
    bsub = b.add_subparsers(dest="bench_command", required=True)
    t = bsub.add_parser("throughput", help="tokens/s, MFU and memory of the training step vs plain transformers")
    add_throughput_arguments(t)
    g = bsub.add_parser("gpu", help="the scale path on one GPU in one command: variants, FSDP, validation, evaluation (JSON out)")
    g.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --tiny, as the test suite runs it)")
    g.add_argument("--tiny", action="store_true", help="toy shapes and short sequences: the same code in seconds")
    g.add_argument("--steps", type=int, default=4, help="timed optimiser steps per variant")
    g.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    g.add_argument("--seed", type=int, default=0, help="seed of the random weights and batches")
    g.add_argument("--json", help="write the record here (with --matrix: rewritten after every variant)")
    g.add_argument("--matrix", action="store_true",
                   help="the fast recipe switch by switch against plain transformers (trainer/bench_matrix.py); "
                        "prints each shape's best configuration as a train: block")
    g.add_argument("--time-limit", type=float, help="--matrix: seconds after which the remaining variants are skipped")
    g.add_argument("--compile-backend", default="inductor", help="--matrix: torch.compile backend of the blocks")
    g.set_defaults(func=_cmd_gpu)


def _cmd_matrix(args) -> int:
    import torch

    from scaling import atomic
    from trainer.bench_matrix import bench_matrix, format_matrix
    from trainer.parallel import close_process_group, ensure_process_group, is_main

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("no CUDA device here; use --device cpu --tiny for the CPU run of the same code", field="--device",
                          value=args.device)
    if args.time_limit is not None and not args.time_limit > 0:
        raise ConfigError("must be a positive number of seconds", field="--time-limit", value=args.time_limit)

    def save(rec):
        if args.json and is_main():
            atomic.write_json(args.json, rec)

    created = ensure_process_group(torch.device(args.device))  # under torchrun: one group for the whole matrix
    try:
        rec = bench_matrix(device=args.device, tiny=args.tiny, steps=args.steps, warmup=args.warmup, seed=args.seed,
                           compile_backend=args.compile_backend, time_limit_s=args.time_limit, on_update=save)
    finally:
        if created:
            close_process_group()
    if is_main():
        print(format_matrix(rec))
    finite = all(math.isfinite(x) for e in rec["groups"] for r in e["results"] for x in r["losses"])
    return 0 if finite and all(e.get("loss_agreement", True) for e in rec["groups"]) else 1
