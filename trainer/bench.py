"""Throughput benchmark (issue 8): the training step, plain transformers vs our speed-ups, side by side.

``scaling bench throughput --model NAME --seq N`` builds the model of a shape (vocabulary = the
shape's + 502 speech tokens, padded to 64), trains it on random packed batches (a few
eos-separated documents per row) for ``warmup`` + ``steps`` optimiser steps per variant, and
reports tokens/s, MFU, peak memory and the losses, each variant also as a ratio to the baseline
measured in the same run.

Variants are ``+``-joined features:
- ``baseline``: plain transformers: SDPA, autocast (bf16 on GPU), fused AdamW on GPU, full logits +
  float32 cross-entropy (trainer.loop.Trainer._loss_sum), no compile;
- ``chunked``: our chunked LM head + cross-entropy (never the full logits), and the attention the
  trainer picks (varlen FlashAttention-2 when installed on a GPU, else SDPA);
- ``liger``: Liger's fused linear cross-entropy on CUDA when installed (else ``chunked``);
- ``compile``: regional torch.compile of the decoder blocks;
- ``ckpt``: activation checkpointing.
Document masking (``doc_mask``, default on) applies to every variant, so the losses are the same
objective and the first-step losses must agree.
"""
from __future__ import annotations

import math
import resource
import time
import warnings
from dataclasses import dataclass


from scaling.errors import ConfigError
from scaling.flops import flops_per_token_exact
from scaling.shapes import DEMO, KNOWN, ModelShape, padded_vocab

SPEECH_TOKENS = 502
FEATURES = ("baseline", "chunked", "liger", "compile", "ckpt")
DEFAULT_VARIANTS = ("baseline", "chunked", "chunked+compile")


@dataclass(frozen=True)
class Variant:
    name: str
    chunked: bool = False
    liger: bool = False
    compile: bool = False
    ckpt: bool = False

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
    return Variant(name=name, chunked="chunked" in parts or "liger" in parts, liger="liger" in parts,
                   compile="compile" in parts, ckpt="ckpt" in parts)


def bench_vocab(shape: ModelShape) -> int:
    return padded_vocab(shape.vocab_size + SPEECH_TOKENS, 64)


def make_batches(n: int, micro_batch: int, seq: int, vocab: int, eos: int, *, docs_per_row: int = 3, seed: int = 0) -> list[torch.Tensor]:
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


def _peak_flops(device: torch.device) -> float | None:
    import torch
    if device.type != "cuda":
        return None
    from trainer.loop import PEAK_FLOPS

    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def _sync(device: torch.device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_gib(device: torch.device) -> tuple[float, str]:
    import torch
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, "torch.cuda.max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "ru_maxrss (whole process, monotonic)"


def _build(shape: ModelShape, v: Variant, seed: int, seq: int, device: torch.device, compile_backend: str):
    import torch
    from trainer.kernels.chunked_ce import regional_compile
    from trainer.model import build_model, quiet_transformers

    quiet_transformers()
    model = build_model(shape, seed, max_positions=max(4096, seq))
    if v.baseline and model.config._attn_implementation != "sdpa":
        model.set_attn_implementation("sdpa")
    model.to(device)
    model.train()
    if v.ckpt:
        (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
    compiled = regional_compile(model, backend=compile_backend) if v.compile else 0
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), fused=device.type == "cuda")
    return model, opt, compiled


def bench_throughput(shape: ModelShape, *, seq: int, micro_batch: int, steps: int, warmup: int, device: str | torch.device = "cpu",
                     variants=DEFAULT_VARIANTS, accumulation: int = 1, doc_mask: bool = True, seed: int = 0,
                     chunk_size: int = 4096, compile_backend: str = "inductor", model_name: str | None = None) -> list[dict]:
    """One record per variant: tokens/s, MFU, peak memory, first/final loss, ratios to the baseline."""
    import torch
    from trainer.attention import doc_inputs
    from trainer.kernels.chunked_ce import lm_loss

    if seq < 2 or micro_batch < 1 or steps < 1 or warmup < 0 or accumulation < 1:
        raise ConfigError("need seq >= 2, micro_batch >= 1, steps >= 1, warmup >= 0, accumulation >= 1",
                          field="bench", value=dict(seq=seq, micro_batch=micro_batch, steps=steps, warmup=warmup))
    device = torch.device(device)
    vs = [parse_variant(x) if isinstance(x, str) else x for x in variants]
    vocab = bench_vocab(shape)
    shape = shape.with_vocab(vocab)
    eos = shape.vocab_size - SPEECH_TOKENS - 1 if shape.vocab_size > SPEECH_TOKENS + 1 else 0
    n_steps = warmup + steps
    batches = make_batches(n_steps * accumulation, micro_batch, seq, vocab, eos, seed=seed)
    fpt = flops_per_token_exact(shape, seq)
    peak = _peak_flops(device)
    use_amp = device.type == "cuda"
    tokens_per_step = micro_batch * seq * accumulation
    results = []
    for v in vs:
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        model, opt, compiled = _build(shape, v, seed, seq, device, compile_backend)
        flash = model.config._attn_implementation == "flash_attention_2"
        params = list(model.parameters())
        valid = torch.ones(micro_batch, seq - 1, dtype=torch.bool, device=device)
        n_pred = valid.numel() * accumulation
        losses = []

        def one_step(k: int) -> torch.Tensor:
            total = torch.zeros((), device=device)
            for a in range(accumulation):
                ids = batches[k * accumulation + a].to(device, non_blocking=True)
                extra = doc_inputs(ids, eos, flash=flash) if doc_mask else {}
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    s = lm_loss(model, ids, valid, extra, chunked=v.chunked, liger=v.liger, chunk_size=chunk_size)
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
        tps = steps * tokens_per_step / dt
        results.append({
            "variant": v.name, "model": model_name, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "seq": seq, "micro_batch": micro_batch, "accumulation": accumulation, "steps": steps, "warmup": warmup,
            "doc_mask": doc_mask, "attn_implementation": model.config._attn_implementation,
            "chunked_ce": v.chunked, "liger": v.liger, "compiled_layers": compiled, "activation_checkpointing": v.ckpt,
            "tokens_per_step": tokens_per_step, "seconds": round(dt, 4), "warmup_seconds": round(t0 - t_compile, 4),
            "tokens_per_s": tps, "flops_per_token": fpt, "mfu": tps * fpt / peak if peak else None,
            "peak_memory_gib": mem, "peak_memory_source": mem_src,
            "first_loss": vals[0], "final_loss": vals[-1], "losses": vals,
        })
        del model, opt
    base = next((r for r in results if r["variant"] == "baseline"), None)
    for r in results:
        r["speedup_vs_baseline"] = r["tokens_per_s"] / base["tokens_per_s"] if base else None
        r["memory_vs_baseline"] = (r["peak_memory_gib"] / base["peak_memory_gib"]
                                   if base and device.type == "cuda" and base["peak_memory_gib"] else None)
        r["first_loss_diff_vs_baseline"] = abs(r["first_loss"] - base["first_loss"]) if base else None
    return results


def format_results(rows: list[dict]) -> str:
    head = f"{'variant':<24} {'tokens/s':>12} {'x base':>7} {'MFU':>7} {'peak GiB':>9} {'first loss':>11} {'final loss':>11}"
    out = [head, "-" * len(head)]
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        sp = f"{r['speedup_vs_baseline']:.2f}" if r["speedup_vs_baseline"] is not None else "-"
        out.append(f"{r['variant']:<24} {r['tokens_per_s']:>12.1f} {sp:>7} {mfu:>7} {r['peak_memory_gib']:>9.3f} "
                   f"{r['first_loss']:>11.5f} {r['final_loss']:>11.5f}")
    if rows and rows[0]["device"] == "cpu":
        out.append("(CPU: peak memory is the process's ru_maxrss, not per variant; MFU needs a known GPU)")
    return "\n".join(out)


def _cmd_throughput(args) -> int:
    import torch
    from scaling import atomic

    if args.model not in KNOWN:
        raise ConfigError(f"unknown model '{args.model}'; known: {', '.join(KNOWN)}", field="model", value=args.model)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu" and args.model not in DEMO and not args.force:
        raise ConfigError(f"'{args.model}' is a published shape; on the CPU only the toy shapes ({', '.join(DEMO)}) are "
                          "sensible (pass --force to run it anyway)", field="model", value=args.model)
    variants = [x for x in args.variants.split(",") if x.strip()]
    for x in variants:
        parse_variant(x)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        rows = bench_throughput(KNOWN[args.model], seq=args.seq, micro_batch=args.micro_batch, steps=args.steps,
                                warmup=args.warmup, device=device, variants=variants, accumulation=args.accumulation,
                                doc_mask=not args.no_doc_mask, seed=args.seed, chunk_size=args.chunk_size,
                                compile_backend=args.compile_backend, model_name=args.model)
    print(format_results(rows))
    if args.json:
        atomic.write_json(args.json, {"model": args.model, "seq": args.seq, "device": str(device), "results": rows})
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
    t.add_argument("--chunk-size", type=int, default=4096, help="tokens per LM-head chunk")
    t.add_argument("--compile-backend", default="inductor")
    t.add_argument("--no-doc-mask", action="store_true", help="plain causal attention over the packed rows")
    t.add_argument("--device", help="default: cuda when available, else cpu")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--force", action="store_true", help="allow a published shape on the CPU")
    t.add_argument("--json", help="also write the records here")
    t.set_defaults(func=_cmd_throughput)


def register(sub) -> None:
    b = sub.add_parser("bench", help="benchmarks of the training step")
    bsub = b.add_subparsers(dest="bench_command", required=True)
    t = bsub.add_parser("throughput", help="tokens/s, MFU and memory of the training step vs plain transformers")
    add_throughput_arguments(t)
