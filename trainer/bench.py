"""Throughput benchmark (issue 8): the training step, plain transformers vs our speed-ups, side by side.

``scaling bench throughput --model NAME --seq N`` builds the model of a shape (vocabulary = the
shape's + 502 speech tokens, padded to 64), trains it on random packed batches (a few
eos-separated documents per row) for ``warmup`` + ``steps`` optimiser steps per variant, and
reports tokens/s, MFU, peak memory and the losses, each variant also as a ratio to the baseline
measured in the same run.

Variants are ``+``-joined features:
- ``baseline``: plain transformers: SDPA, autocast (bf16 on GPU), fused AdamW on GPU, and the model's
  own loss (``labels=``: full logits, float32 cross-entropy), no compile;
- ``chunked``: our chunked LM head + cross-entropy (never the full logits), and the attention the
  trainer picks (varlen FlashAttention-2 when installed on a GPU, else SDPA);
- ``liger``: Liger's fused linear cross-entropy on CUDA when installed (else ``chunked``);
- ``compile``: regional torch.compile of the decoder blocks;
- ``ckpt``: activation checkpointing.
- ``sdpa``: SDPA attention even where FlashAttention-2 is installed (to compare the two);
- ``flex``: PyTorch's flex_attention (a block-sparse document mask: the packed micro-batch goes in as
  one row with restarting position ids, from which transformers builds the BlockMask; GPU only).
Document masking (``doc_mask``, default on) applies to every variant, so the losses are the same
objective and the first-step losses must agree. Every variant is set up by the trainer's own
``trainer.parallel.parallelize`` and scored by its one loss path (``trainer.attention.packed_inputs``
+ ``trainer.kernels.chunked_ce.lm_loss``), so what is measured is what trains.

``scaling bench gpu`` is the one-command check of the scale path on a real GPU (see ``bench_gpu``);
``--device cpu --tiny`` runs the same code on toy shapes in the test suite.

torch is imported inside the functions: ``scaling --help`` and the torch-free commands never load it.
"""
from __future__ import annotations

import math
import resource
import time
import warnings
from dataclasses import dataclass, replace

from scaling.errors import ConfigError
from scaling.flops import flops_per_token_exact
from scaling.shapes import DEMO, KNOWN, ModelShape, padded_vocab

SPEECH_TOKENS = 502
FEATURES = ("baseline", "chunked", "liger", "compile", "ckpt", "sdpa", "flex")
DEFAULT_VARIANTS = ("baseline", "chunked", "chunked+compile")


@dataclass(frozen=True)
class Variant:
    name: str
    chunked: bool = False
    liger: bool = False
    compile: bool = False
    ckpt: bool = False
    sdpa: bool = False
    flex: bool = False

    @property
    def baseline(self) -> bool:
        return self.name == "baseline"


def parse_variant(name: str) -> Variant:
    parts = [p.strip() for p in name.split("+") if p.strip()]
    bad = [p for p in parts if p not in FEATURES]
    if not parts or bad:
        raise ConfigError(f"unknown variant '{name}'; features: {', '.join(FEATURES)} joined by '+'", field="variants", value=name)
    if "baseline" in parts and len(parts) > 1:
        raise ConfigError("'baseline' is the plain path and takes no other feature", field="variants", value=name)
    if "sdpa" in parts and "flex" in parts:
        raise ConfigError("'sdpa' and 'flex' are two attention implementations; pick one", field="variants", value=name)
    return Variant(name=name, chunked="chunked" in parts or "liger" in parts, liger="liger" in parts,
                   compile="compile" in parts, ckpt="ckpt" in parts, sdpa="sdpa" in parts, flex="flex" in parts)


def variant_attention(v: Variant) -> str | None:
    """The attention implementation a variant asks for (None: the trainer's choice)."""
    if v.baseline or v.sdpa:
        return "sdpa"
    return "flex_attention" if v.flex else None


def _estimate(shape: ModelShape, name: str, micro_batch: int, seq: int, v: Variant, precision: str, *, fsdp: bool,
              attn: str, doc_mask: bool, accumulation: int) -> float:
    """``scaling memory``'s figure for one device (no allocator overhead), to set beside the measured peak,
    for what this run does: FSDP or not, the attention (SDPA with the document mask, or a mask-free
    kernel), one micro-batch per step or several. Compiled blocks and Liger's loss are not modelled:
    for those the figure is the eager block's and the chunked loss's, an upper bound."""
    from scaling.memory import estimate

    attention = "sdpa" if attn == "sdpa" and doc_mask else "flash"  # flash-attn, flex and unmasked SDPA save no mask
    return round(estimate(shape, model=name, gpus=1, micro_batch=micro_batch, seq=seq, activation_checkpointing=v.ckpt,
                          chunked_ce=v.chunked, precision=precision, overhead_gib=0.0, fsdp=fsdp, attention=attention,
                          accumulation=accumulation).total_gib, 3)


def bench_vocab(shape: ModelShape) -> int:
    return padded_vocab(shape.vocab_size + SPEECH_TOKENS, 64)


def make_batches(n: int, micro_batch: int, seq: int, vocab: int, eos: int, *, docs_per_row: int = 3, seed: int = 0) -> list:
    """``n`` random [micro_batch, seq] batches, each row packed with ``docs_per_row`` eos-closed documents."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab - 1, (micro_batch, seq), generator=g)
        ids[ids >= eos] += 1  # no accidental eos
        for r in range(micro_batch):
            cuts = torch.randperm(seq - 2, generator=g)[: max(docs_per_row - 1, 0)] + 1
            ids[r, cuts] = eos
            ids[r, -1] = eos
        out.append(ids)
    return out


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_gib(device) -> tuple[float, str]:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, "torch.cuda.max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "ru_maxrss (whole process, monotonic)"


def _train_options(v: Variant, precision: str = "amp-bf16"):
    from scaling.spec import TrainConfig

    return TrainConfig(activation_checkpointing=v.ckpt, compile=v.compile, chunked_ce=v.chunked, precision=precision)


def _build(shape: ModelShape, v: Variant, seed: int, seq: int, device, compile_backend: str, *, fsdp: bool = False,
           precision: str = "amp-bf16"):
    """The model built and initialised on ``device`` itself (a 7B initialised on the host would take
    minutes), in bf16 for ``precision='bf16'``, then parallelised as the trainer does."""
    import torch

    from trainer.model import build_model, quiet_transformers
    from trainer.parallel import parallelize

    quiet_transformers()
    dtype = torch.get_default_dtype()
    if precision == "bf16":
        torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = build_model(shape, seed, max_positions=max(4096, seq), attn=variant_attention(v))
    finally:
        torch.set_default_dtype(dtype)
    model.train()
    model, compiled = parallelize(model, 1, _train_options(v, precision), device=device, compile_backend=compile_backend,
                                  fsdp=fsdp)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), fused=device.type == "cuda" and not fsdp)
    return model, opt, compiled


def bench_throughput(shape: ModelShape, *, seq: int, micro_batch: int, steps: int, warmup: int, device="cpu",
                     variants=DEFAULT_VARIANTS, accumulation: int = 1, doc_mask: bool = True, seed: int = 0,
                     chunk_size: int = 4096, compile_backend: str = "inductor", model_name: str | None = None,
                     fsdp: bool = False, keep_model: bool = False, precision: str = "amp-bf16",
                     on_result=None, profile: bool = False) -> list[dict]:
    """One record per variant: tokens/s, MFU, peak memory, first/final loss, ratios to the baseline.
    ``fsdp``: the model under ``fully_shard`` (one process: the FSDP code path on one GPU);
    ``precision``: ``amp-bf16`` (fp32 master weights, bf16 autocast) or ``bf16`` (bf16 weights and
    AdamW state, as the trainer's ``train.precision``). ``on_result(rows)`` is called after each
    variant (a long run killed half-way keeps what it measured); ``profile``: two more steps under
    torch.profiler, the top kernels by device time in the record's ``profile``."""
    import torch

    from trainer.attention import packed_inputs
    from trainer.kernels.chunked_ce import lm_loss
    from trainer.mfu import device_peak_flops, mfu
    from trainer.model import autocast

    if seq < 2 or micro_batch < 1 or steps < 1 or warmup < 0 or accumulation < 1:
        raise ConfigError("need seq >= 2, micro_batch >= 1, steps >= 1, warmup >= 0, accumulation >= 1",
                          field="bench", value=dict(seq=seq, micro_batch=micro_batch, steps=steps, warmup=warmup))
    from trainer.model import PRECISIONS

    if precision not in PRECISIONS:
        raise ConfigError(f"must be one of {PRECISIONS}", field="--precision", value=precision)
    device = torch.device(device)
    vs = [parse_variant(x) if isinstance(x, str) else x for x in variants]
    if device.type != "cuda" and any(v.flex for v in vs):
        raise ConfigError("flex_attention is benchmarked on a GPU only (it has no backward on CPU)",
                          field="variants", value=[v.name for v in vs if v.flex])
    vocab = bench_vocab(shape)
    shape = shape.with_vocab(vocab)
    eos = shape.vocab_size - SPEECH_TOKENS - 1 if shape.vocab_size > SPEECH_TOKENS + 1 else 0
    n_steps = warmup + steps
    batches = make_batches(n_steps * accumulation, micro_batch, seq, vocab, eos, seed=seed)
    fpt = flops_per_token_exact(shape, seq)
    peak = device_peak_flops(device)
    tokens_per_step = micro_batch * seq * accumulation
    results = []
    for v in vs:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        model, opt, compiled = _build(shape, v, seed, seq, device, compile_backend, fsdp=fsdp, precision=precision)
        if device.type == "cuda":  # the peak of training, weights included, not of the initialisation
            torch.cuda.reset_peak_memory_stats(device)
        attn = model.config._attn_implementation
        params = list(model.parameters())
        valid = torch.ones(micro_batch, seq - 1, dtype=torch.bool, device=device)
        n_pred = valid.numel() * accumulation
        losses = []

        def one_step(k: int):
            total = torch.zeros((), device=device)
            for a in range(accumulation):
                ids = batches[k * accumulation + a].to(device, non_blocking=True)
                ids, val, extra = packed_inputs(ids, valid, eos, attn=attn, doc_mask=doc_mask)
                with autocast(device, precision):
                    if v.baseline:  # plain transformers: the model's own loss (a mean) back to a sum
                        labels = torch.where(torch.nn.functional.pad(val, (1, 0), value=False), ids, -100)
                        s = model(input_ids=ids, labels=labels, **extra).loss * val.sum()
                    else:
                        s = lm_loss(model, ids, val, extra, chunked=v.chunked, liger=v.liger, chunk_size=chunk_size)
                (s / n_pred).backward()
                total += s.detach()
            torch.nn.utils.clip_grad_norm_(params, 1.0)  # no .item(): no host-device sync
            opt.step()
            opt.zero_grad(set_to_none=True)
            return total / n_pred

        t_compile = time.perf_counter()
        for k in range(warmup):
            losses.append(one_step(k))
        _sync(device)
        t0 = time.perf_counter()
        for k in range(warmup, n_steps):
            losses.append(one_step(k))
        _sync(device)
        dt = time.perf_counter() - t0
        vals = [float(x) for x in losses]  # the only syncs, after timing
        mem, mem_src = _peak_memory_gib(device)
        prof = _profile(lambda: one_step(0), device) if profile else None
        tps = steps * tokens_per_step / dt
        results.append({
            "variant": v.name, "model": model_name, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "seq": seq, "micro_batch": micro_batch, "accumulation": accumulation, "steps": steps, "warmup": warmup,
            "doc_mask": doc_mask, "attn_implementation": attn, "fsdp": fsdp, "precision": precision,
            "num_layers": shape.num_layers, "params": sum(p.numel() for p in params),
            "chunked_ce": v.chunked, "liger": v.liger, "compiled_layers": compiled, "activation_checkpointing": v.ckpt,
            "tokens_per_step": tokens_per_step, "seconds": round(dt, 4), "warmup_seconds": round(t0 - t_compile, 4),
            "tokens_per_s": tps, "tokens_per_s_per_device": tps, "flops_per_token": fpt, "mfu": mfu(tps, fpt, 1, peak),
            "peak_memory_gib": mem, "peak_memory_source": mem_src,
            "memory_estimate_gib": _estimate(shape, model_name or "model", micro_batch, seq, v, precision, fsdp=fsdp, attn=attn,
                                            doc_mask=doc_mask, accumulation=accumulation),
            "first_loss": vals[0], "final_loss": vals[-1], "losses": vals,
        })
        if prof is not None:
            results[-1]["profile"] = prof
        if on_result is not None:
            on_result(_ratios(results))
        if keep_model:
            results[-1]["_model"] = model
        del model, opt
    return _ratios(results)


def _ratios(results: list[dict]) -> list[dict]:
    """Each record's speed, memory and first loss against the baseline's (None without a baseline)."""
    base = next((r for r in results if r["variant"] == "baseline"), None)
    for r in results:
        r["speedup_vs_baseline"] = r["tokens_per_s"] / base["tokens_per_s"] if base else None
        r["memory_vs_baseline"] = (r["peak_memory_gib"] / base["peak_memory_gib"]
                                   if base and r["device"].startswith("cuda") and base["peak_memory_gib"] else None)
        r["first_loss_diff_vs_baseline"] = abs(r["first_loss"] - base["first_loss"]) if base else None
    return results


def _profile(step, device, *, top: int = 25) -> dict:
    """Two steps under torch.profiler: the ``top`` kernels/ops by self device time, and the total."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(2):
            step()
        _sync(device)
    ev = prof.key_averages()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    rows = sorted(ev, key=lambda e: getattr(e, key, 0.0), reverse=True)
    total = sum(getattr(e, key, 0.0) for e in ev)
    return {"steps": 2, "unit": "us", "total": total, "sort": key,
            "top": [{"name": e.key[:120], "time": getattr(e, key, 0.0), "share": getattr(e, key, 0.0) / total if total else None,
                     "calls": e.count} for e in rows[:top]]}


def format_results(rows: list[dict]) -> str:
    head = (f"{'variant':<24} {'tokens/s':>12} {'x base':>7} {'MFU':>7} {'peak GiB':>9} {'est. GiB':>9} {'first loss':>11} "
            f"{'final loss':>11}")
    out = [head, "-" * len(head)]
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        sp = f"{r['speedup_vs_baseline']:.2f}" if r["speedup_vs_baseline"] is not None else "-"
        out.append(f"{r['variant']:<24} {r['tokens_per_s']:>12.1f} {sp:>7} {mfu:>7} {r['peak_memory_gib']:>9.3f} "
                   f"{r['memory_estimate_gib']:>9.3f} {r['first_loss']:>11.5f} {r['final_loss']:>11.5f}")
    if rows and rows[0]["device"] == "cpu":
        out.append("(CPU: peak memory is the process's ru_maxrss, not per variant; MFU needs a known GPU)")
    return "\n".join(out)


def _cmd_throughput(args) -> int:
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
    t.add_argument("--seq", type=int, default=2048)
    t.add_argument("--micro-batch", type=int, default=1)
    t.add_argument("--accumulation", type=int, default=1, help="micro-batches per optimiser step")
    t.add_argument("--steps", type=int, default=10, help="timed optimiser steps (after warm-up)")
    t.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    t.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="comma-separated; each '+'-joined from: " + ", ".join(FEATURES))
    t.add_argument("--layers", type=int, help="keep only the first N decoder blocks of the shape (its width at a lower depth)")
    t.add_argument("--precision", default="amp-bf16", choices=("amp-bf16", "bf16"),
                   help="amp-bf16: fp32 master weights + bf16 autocast; bf16: bf16 weights and optimiser state")
    t.add_argument("--chunk-size", type=int, default=4096, help="tokens per LM-head chunk")
    t.add_argument("--compile-backend", default="inductor")
    t.add_argument("--no-doc-mask", action="store_true", help="plain causal attention over the packed rows")
    t.add_argument("--device", help="default: cuda when available, else cpu")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--force", action="store_true", help="allow a published shape on the CPU")
    t.add_argument("--profile", action="store_true", help="two more steps per variant under torch.profiler (top kernels in the JSON)")
    t.add_argument("--json", help="also write the records here (rewritten after every variant)")
    t.set_defaults(func=_cmd_throughput)


# -- scaling bench gpu: the scale path on one real GPU, in one command --------------------------
def _process_group(device) -> bool:
    """A one-process group for FSDP on one device (when none is running); True if created here."""
    import tempfile

    import torch

    if torch.distributed.is_initialized():
        return False
    store = torch.distributed.FileStore(tempfile.mktemp(prefix="scaling-bench-"), 1)
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo", store=store, rank=0, world_size=1)
    return True




def bench_gpu(*, device="cuda", tiny: bool = False, steps: int = 4, warmup: int = 2, seed: int = 0) -> dict:
    """The scale path on one device, everything the first GPU run needs to trust:

    1. training steps of the Qwen2.5-0.5B shape with the speech vocabulary (``tiny``: toy-xs):
       plain (SDPA, full logits) vs activation checkpointing, chunked CE, both, and SDPA vs
       FlashAttention-2 when installed: tokens/s, MFU, peak memory next to ``scaling memory``'s
       estimate, and the first-step loss of every variant against the plain one;
    2. the Qwen2.5-7B width with 2 layers under FSDP (``fully_shard`` on a one-process group) with
       checkpointing and chunked CE (``tiny``: toy-s with 2 layers);
    3. validation (packed windows, document masks) and a few evaluation items on that FSDP model.
    """
    import torch

    from scaling.memory import speech_shape
    from trainer.eval.scoring import Encoded, sequence_nll
    from trainer.model import attention_implementation
    from trainer.validate import val_loss

    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("no CUDA device here; use --device cpu --tiny for the CPU run of the same code", field="--device", value="cuda")
    if tiny:
        small_name, small, seq, mb = "toy-xs", DEMO["toy-xs"], 64, 2
        big_name, big, big_seq, big_mb = "toy-s (2 layers)", replace(DEMO["toy-s"], num_layers=2), 64, 2
    else:
        small_name, seq, mb = "qwen2.5-0.5b", 2048, 4
        small = speech_shape(small_name)
        big_name, big_seq, big_mb = "qwen2.5-7b width, 2 layers", 2048, 2
        big = replace(speech_shape("qwen2.5-7b"), num_layers=2)
    variants = ["baseline", "ckpt", "chunked", "chunked+ckpt"]
    flash = device.type == "cuda" and attention_implementation() == "flash_attention_2"
    if flash:
        variants.append("chunked+sdpa")  # the chunked variants above use FlashAttention-2
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = bench_throughput(small, seq=seq, micro_batch=mb, steps=steps, warmup=warmup, device=device, variants=variants,
                                seed=seed, model_name=small_name)
    base = rows[0]["first_loss"]
    created = _process_group(device)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fs = bench_throughput(big, seq=big_seq, micro_batch=big_mb, steps=steps, warmup=warmup, device=device,
                                  variants=["chunked+ckpt"], seed=seed, model_name=big_name, fsdp=True, keep_model=True)[0]
        model = fs.pop("_model")
        vocab = bench_vocab(big)
        eos = vocab - SPEECH_TOKENS - 1
        windows = torch.stack(make_batches(2, big_mb, big_seq, vocab, eos, seed=seed + 1)).reshape(-1, big_seq).numpy()
        t = time.perf_counter()
        vl = val_loss(model, windows, batch_size=big_mb, eos=eos, chunked=True)
        validation = {"windows": len(windows), "seq": big_seq, "val_loss": vl, "seconds": round(time.perf_counter() - t, 3)}
        g = torch.Generator().manual_seed(seed + 2)
        items = [Encoded(torch.randint(0, eos, (int(n),), generator=g).tolist(), int(n) // 2)
                 for n in torch.randint(8, max(9, big_seq // 4), (16,), generator=g)]
        t = time.perf_counter()
        nll = sequence_nll(model, items, batch_size=8).value("mean")
        evaluation = {"sequences": len(items), "mean_nll": float(nll.mean()), "seconds": round(time.perf_counter() - t, 3)}
        del model
    finally:
        if created:
            torch.distributed.destroy_process_group()
    finite = all(math.isfinite(x) for r in rows + [fs] for x in r["losses"]) and math.isfinite(vl) and math.isfinite(evaluation["mean_nll"])
    return {
        "device": str(device), "device_name": rows[0]["device_name"], "tiny": tiny, "flash_attention_2": flash,
        "single": rows, "fsdp": fs, "validation": validation, "evaluation": evaluation,
        "loss_agreement": {r["variant"]: abs(r["first_loss"] - base) for r in rows},
        "finite": finite, "seconds": round(time.perf_counter() - t0, 2),
    }


def format_gpu(rec: dict) -> str:
    head = (f"{'variant':<26} {'attention':<18} {'tokens/s':>11} {'MFU':>7} {'peak GiB':>9} {'est. GiB':>9} "
            f"{'first loss':>11} {'|diff|':>9}")
    out = [f"scaling bench gpu on {rec['device_name']} ({rec['device']}){' --tiny' if rec['tiny'] else ''}", head, "-" * len(head)]
    for r in rec["single"] + [rec["fsdp"]]:
        name = f"{r['variant']}{' (FSDP)' if r['fsdp'] else ''}"
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        diff = rec["loss_agreement"].get(r["variant"]) if not r["fsdp"] else None
        out.append(f"{name:<26} {r['attn_implementation']:<18} {r['tokens_per_s']:>11.1f} {mfu:>7} {r['peak_memory_gib']:>9.3f} "
                   f"{r['memory_estimate_gib']:>9.3f} {r['first_loss']:>11.5f} {'-' if diff is None else f'{diff:.2e}':>9}")
    out.append(f"FSDP model ({rec['fsdp']['model']}): validation {rec['validation']['val_loss']:.4f} over "
               f"{rec['validation']['windows']} windows in {rec['validation']['seconds']} s; evaluation "
               f"{rec['evaluation']['sequences']} sequences in {rec['evaluation']['seconds']} s")
    if rec["device"] == "cpu":
        out.append("(CPU: peak memory is the process's ru_maxrss; MFU needs a known GPU)")
    out.append(f"total {rec['seconds']} s; all losses finite: {rec['finite']}")
    return "\n".join(out)


def _cmd_gpu(args) -> int:
    from scaling import atomic
    from trainer.parallel import is_main

    if args.device == "cpu" and not args.tiny:
        raise ConfigError("the published shapes do not belong on a CPU; add --tiny", field="--device", value="cpu")
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
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--json", help="write the record here")
    g.set_defaults(func=_cmd_gpu)
