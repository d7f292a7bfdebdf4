"""Throughput benchmark: the training step, plain transformers vs the trainer's switches, side by side.

``bench_throughput`` builds the model of a shape (vocabulary = the shape's + 502 speech tokens, padded
to 64), trains it on random packed batches (a few eos-separated documents per row) for ``warmup`` +
``steps`` optimiser steps per variant, and reports tokens/s, MFU, peak memory and the losses, each
variant also as a ratio to the baseline measured in the same run.

Variants are ``+``-joined features (``FEATURE_HELP``): ``baseline`` is plain transformers (SDPA with the
document mask, autocast, fused AdamW, the model's own ``labels=`` loss, no compile); every other feature
is one ``train:`` switch (chunked, liger, cce: the LM-head loss; sdpa, flex, varlen: the attention;
compile; ckpt, sac: checkpointing; bf16p: bf16 compute parameters; ligerk: Liger's kernels; mbN: the
micro-batch). Document masking (``doc_mask``, default on) applies to every variant and every variant
trains on the same rows, so the losses are the same objective and the first-step losses must agree.
Every variant is set up by the trainer's own ``trainer.parallel.parallelize`` (and AdamW) and scored
by its one loss path (``trainer.attention.packed_inputs`` + ``trainer.kernels.chunked_ce.lm_loss``),
so what is measured is what trains.

``bench_gpu`` is the one-command check of the scale path on a real GPU; ``trainer.bench_matrix`` the
fast recipe's matrix; the commands are in ``trainer.bench_cli``. torch is imported inside the
functions: ``scaling --help`` and the torch-free commands never load it.
"""
from __future__ import annotations

import math
import resource
import time
import warnings
from dataclasses import dataclass, replace

from scaling.errors import ConfigError
from scaling.flops import flops_per_token_exact
from scaling.shapes import DEMO, ModelShape, padded_vocab

SPEECH_TOKENS = 502
# bench features and the train switch each one turns on (trainer.parallel.parallelize applies them all)
FEATURES = ("baseline", "chunked", "liger", "compile", "ckpt", "sdpa", "flex", "varlen", "bf16p", "cce", "ligerk", "sac")
FEATURE_HELP = {
    "baseline": "plain transformers: SDPA with the document mask, autocast, fused AdamW, the model's own labels= loss",
    "chunked": "train.chunked_ce (the Python chunked LM head + CE)",
    "liger": "train.liger_ce (Liger's fused linear cross-entropy; CUDA)",
    "compile": "train.compile (per-block torch.compile, fullgraph where the attention allows)",
    "ckpt": "train.activation_checkpointing: true (every block recomputed)",
    "sac": "train.activation_checkpointing: op (selective: matmul and attention outputs kept)",
    "sdpa": "train.attention: sdpa", "flex": "train.attention: flex_attention (GPU)",
    "varlen": "train.attention: varlen (torch's variable-length attention, no mask)",
    "bf16p": "train.bf16_params: true (FSDP2 bf16 compute parameters, fp32 master and reduction, one GPU too)",
    "cce": "train.compiled_ce (compiled chunked CE, gradients in the forward)",
    "ligerk": "train.liger_kernels (Liger's RMSNorm, SwiGLU, RoPE; CUDA)",
    "mbN": "micro-batch N (the same rows per optimiser step: fewer accumulation steps)",
}
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
    varlen: bool = False
    bf16p: bool = False
    cce: bool = False
    ligerk: bool = False
    sac: bool = False
    micro: int | None = None  # micro-batch override (mbN)

    @property
    def baseline(self) -> bool:
        return self.name == "baseline"


def parse_variant(name: str) -> Variant:
    parts = [p.strip() for p in name.split("+") if p.strip()]
    micro = [p for p in parts if p.startswith("mb") and p[2:].isdigit() and int(p[2:]) > 0]
    bad = [p for p in parts if p not in FEATURES and p not in micro]
    if not parts or bad:
        raise ConfigError(f"unknown variant '{name}'; features: {', '.join(FEATURES)}, mbN, joined by '+'", field="variants",
                          value=name)
    if "baseline" in parts and len(parts) > 1:
        raise ConfigError("'baseline' is the plain path and takes no other feature", field="variants", value=name)
    for group, what in ((("sdpa", "flex", "varlen"), "attention implementations"), (("ckpt", "sac"), "checkpointing modes"),
                        (("liger", "cce"), "LM-head losses")):
        if sum(p in parts for p in group) > 1:
            raise ConfigError(f"{' / '.join(group)} are {what}; pick one", field="variants", value=name)
    if len(micro) > 1:
        raise ConfigError("one micro-batch size per variant", field="variants", value=name)
    f = {k: k in parts for k in FEATURES if k != "baseline"}
    f["chunked"] = f["chunked"] or f["liger"] or f["cce"]
    return Variant(name=name, micro=int(micro[0][2:]) if micro else None, **f)


def variant_attention(v: Variant) -> str:
    """The train.attention a variant asks for ("auto": the trainer's choice)."""
    if v.baseline or v.sdpa:
        return "sdpa"
    return "flex_attention" if v.flex else "varlen" if v.varlen else "auto"


def _estimate(shape: ModelShape, name: str, micro_batch: int, seq: int, v: Variant, precision: str, *, fsdp: bool,
              attn: str, doc_mask: bool, accumulation: int, gpus: int = 1) -> float:
    """``scaling memory``'s figure for one device (no allocator overhead), to set beside the measured peak,
    for what this run does: FSDP or not, the attention (SDPA with the document mask, or a mask-free
    kernel), one micro-batch per step or several, the checkpointing mode and the LM-head loss. Compiled
    blocks and Liger's kernels are not modelled: for those the figure is the eager block's and the
    chunked loss's, an upper bound."""
    from scaling.memory import estimate

    attention = "sdpa" if attn == "sdpa" and doc_mask else "flash"  # flash-attn, varlen, flex and unmasked SDPA save no mask
    return round(estimate(shape, model=name, gpus=gpus, micro_batch=micro_batch, seq=seq,
                          activation_checkpointing="op" if v.sac else v.ckpt, chunked_ce=v.chunked and not v.cce,
                          compiled_ce=v.cce, precision=precision, overhead_gib=0.0, fsdp=fsdp, attention=attention,
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

    return TrainConfig(activation_checkpointing="op" if v.sac else v.ckpt, compile=v.compile, chunked_ce=v.chunked and not v.cce,
                       liger_ce=v.liger, compiled_ce=v.cce, precision=precision, attention=variant_attention(v),
                       bf16_params=True if v.bf16p else "auto", liger_kernels=v.ligerk)


def _build(shape: ModelShape, v: Variant, seed: int, seq: int, device, compile_backend: str, *, fsdp: bool = False,
           precision: str = "amp-bf16", world_size: int = 1):
    """The model built and initialised on ``device`` itself (a 7B initialised on the host would take
    minutes), in bf16 for ``precision='bf16'``, then parallelised as the trainer does; the optimizer the
    trainer builds. Returns (model, optimizer, compiled blocks, optimizer name, train options)."""
    import torch

    from trainer.model import attention_implementation, build_model, quiet_transformers
    from trainer.parallel import adamw, parallelize

    quiet_transformers()
    tc = _train_options(v, precision)
    attn = attention_implementation(tc.attention, device)
    dtype = torch.get_default_dtype()
    if precision == "bf16":
        torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = build_model(shape, seed, max_positions=max(4096, seq), attn=attn)
    finally:
        torch.set_default_dtype(dtype)
    model.train()
    model, compiled = parallelize(model, world_size, tc, device=device, compile_backend=compile_backend, fsdp=fsdp)
    opt, opt_name = adamw(model, lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, device=device)
    return model, opt, compiled, opt_name, tc


def bench_throughput(shape: ModelShape, *, seq: int, micro_batch: int, steps: int, warmup: int, device="cpu",
                     variants=DEFAULT_VARIANTS, accumulation: int = 1, doc_mask: bool = True, seed: int = 0,
                     chunk_size: int | None = None, compile_backend: str = "inductor", model_name: str | None = None,
                     fsdp: bool = False, keep_model: bool = False, precision: str = "amp-bf16",
                     on_result=None, profile: bool = False) -> list[dict]:
    """One record per variant: tokens/s, MFU, peak memory, first/final loss, ratios to the baseline.

    Every variant trains on the same rows: ``micro_batch x accumulation x world`` sequences per optimiser
    step (a variant with ``mbN`` takes them N at a time, in fewer accumulation steps), so all variants
    optimise the same objective and their first-step losses must agree. Under ``torchrun`` each process
    takes every world-th row, the model is sharded (FSDP2) and the losses are all-reduced: the records are
    those of the whole group, tokens/s global and per device. ``fsdp``: the model under ``fully_shard`` on
    one process too (as ``bf16p`` does); ``precision``: ``amp-bf16`` (fp32 master weights, bf16 compute)
    or ``bf16`` (bf16 weights and AdamW state). ``on_result(rows)`` is called after each variant (a long
    run killed half-way keeps what it measured); ``profile``: two more steps under torch.profiler, the
    kernels' shares of the device time in the record's ``profile``."""
    import torch

    from trainer.attention import packed_inputs
    from trainer.kernels.chunked_ce import lm_loss
    from trainer.mfu import device_peak_flops, mfu
    from trainer.model import PRECISIONS, autocast
    from trainer.parallel import all_reduce_sum, ensure_process_group, world

    if seq < 2 or micro_batch < 1 or steps < 1 or warmup < 0 or accumulation < 1:
        raise ConfigError("need seq >= 2, micro_batch >= 1, steps >= 1, warmup >= 0, accumulation >= 1",
                          field="bench", value=dict(seq=seq, micro_batch=micro_batch, steps=steps, warmup=warmup))
    if precision not in PRECISIONS:
        raise ConfigError(f"must be one of {PRECISIONS}", field="--precision", value=precision)
    device = torch.device(device)
    rank, n_ranks = world()
    vs = [parse_variant(x) if isinstance(x, str) else x for x in variants]
    if device.type != "cuda" and any(v.flex for v in vs):
        raise ConfigError("flex_attention is benchmarked on a GPU only (it has no backward on CPU)",
                          field="variants", value=[v.name for v in vs if v.flex])
    rows_per_step = micro_batch * accumulation  # per process
    for v in vs:
        if v.micro is not None and rows_per_step % v.micro:
            raise ConfigError(f"micro-batch {v.micro} does not divide the {rows_per_step} rows per step and process "
                              "(micro-batch x accumulation)", field="variants", value=v.name)
    vocab = bench_vocab(shape)
    shape = shape.with_vocab(vocab)
    eos = shape.vocab_size - SPEECH_TOKENS - 1 if shape.vocab_size > SPEECH_TOKENS + 1 else 0
    n_steps = warmup + steps
    # the whole group's rows of every step; this process takes every world-th
    batches = [b[rank::n_ranks] for b in make_batches(n_steps, rows_per_step * n_ranks, seq, vocab, eos, seed=seed)]
    fpt = flops_per_token_exact(shape, seq)
    peak = device_peak_flops(device)
    tokens_per_step = rows_per_step * n_ranks * seq  # the group's
    n_pred = rows_per_step * n_ranks * (seq - 1)
    created = ensure_process_group(device, single=any(v.bf16p for v in vs) or fsdp)
    results = []
    try:
        for v in vs:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            use_fsdp = fsdp or n_ranks > 1 or v.bf16p
            model, opt, compiled, opt_name, tc = _build(shape, v, seed, seq, device, compile_backend, fsdp=use_fsdp,
                                                        precision=precision, world_size=n_ranks)
            if device.type == "cuda":  # the peak of training, weights included, not of the initialisation
                torch.cuda.reset_peak_memory_stats(device)
            attn = model.config._attn_implementation
            params = list(model.parameters())
            micro = v.micro or micro_batch
            acc = rows_per_step // micro
            valid = torch.ones(micro, seq - 1, dtype=torch.bool, device=device)
            losses = []

            def one_step(k: int):
                total = torch.zeros((), device=device)
                for a in range(acc):
                    ids = batches[k][a * micro:(a + 1) * micro].to(device, non_blocking=True)
                    ids, val, extra = packed_inputs(ids, valid, eos, attn=attn, doc_mask=doc_mask)
                    with autocast(device, precision):
                        if v.baseline:  # plain transformers: the model's own loss (a mean) back to a sum
                            labels = torch.where(torch.nn.functional.pad(val, (1, 0), value=False), ids, -100)
                            s = model(input_ids=ids, labels=labels, **extra).loss * val.sum()
                        else:
                            s = lm_loss(model, ids, val, extra, chunked=v.chunked, liger=v.liger, compiled=v.cce,
                                        chunk_size=chunk_size)
                    # FSDP averages gradients over processes, hence x world: the step's loss is the group's sum / n_pred
                    (s * (n_ranks / n_pred)).backward()
                    total += s.detach()
                torch.nn.utils.clip_grad_norm_(params, 1.0)  # no .item(): no host-device sync
                opt.step()
                opt.zero_grad(set_to_none=True)
                return all_reduce_sum(total) / n_pred

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
                "seq": seq, "micro_batch": micro, "accumulation": acc, "steps": steps, "warmup": warmup,
                "doc_mask": doc_mask, "attn_implementation": attn, "fsdp": use_fsdp, "precision": precision,
                "world_size": n_ranks, "num_layers": shape.num_layers, "params": sum(p.numel() for p in params),  # a DTensor's numel is the whole tensor's
                "chunked_ce": v.chunked, "compiled_ce": v.cce, "liger": v.liger, "liger_kernels": v.ligerk,
                "bf16_params": v.bf16p and device.type == "cuda" and precision == "amp-bf16",
                "compiled_layers": compiled, "activation_checkpointing": tc.activation_checkpointing, "optimizer": opt_name,
                "train": _train_block(tc, micro),
                "tokens_per_step": tokens_per_step, "seconds": round(dt, 4), "warmup_seconds": round(t0 - t_compile, 4),
                "tokens_per_s": tps, "tokens_per_s_per_device": tps / n_ranks, "flops_per_token": fpt,
                "mfu": mfu(tps, fpt, n_ranks, peak), "peak_memory_gib": mem, "peak_memory_source": mem_src,
                "memory_estimate_gib": _estimate(shape, model_name or "model", micro, seq, v, precision, fsdp=use_fsdp,
                                                 attn=attn, doc_mask=doc_mask, accumulation=acc, gpus=n_ranks),
                "first_loss": vals[0], "final_loss": vals[-1], "losses": vals,
            })
            if prof is not None:
                results[-1]["profile"] = prof
            if on_result is not None:
                on_result(_ratios(results))
            if keep_model:
                results[-1]["_model"] = model
            restore = getattr(model, "_liger_restore", None)
            if restore is not None:
                restore()
            model = opt = None  # the variant's model and optimizer go before the next is built
    finally:
        if created:
            from trainer.parallel import close_process_group

            close_process_group()
    return _ratios(results)


def _train_block(tc, micro: int) -> dict:
    """The ``train:`` keys of a variant that differ from the defaults (what a sweep file would say)."""
    from dataclasses import asdict

    from scaling.spec import TrainConfig

    default = asdict(TrainConfig())
    keys = ("attention", "compile", "compiled_ce", "chunked_ce", "liger_ce", "liger_kernels", "bf16_params",
            "activation_checkpointing", "precision")
    out = {k: v for k, v in asdict(tc).items() if k in keys and v != default[k]}
    out["micro_batch_size"] = micro
    return out


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
    """Two steps under torch.profiler: the ``top`` entries by self time and their shares of the total (see
    ``profile_shares``)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(2):
            step()
        _sync(device)
    return {"steps": 2, **profile_shares(prof.key_averages(), device_type=device.type, top=top)}


def profile_shares(events, *, device_type: str, top: int = 25) -> dict:
    """Each entry's share of the step's time, every unit of time counted once.

    On a GPU the profiler reports a kernel's time twice: as the kernel (a device event) and again as the
    ``self_device_time_total`` of the operator that launched it (a CPU event), so summing all events
    halves every share. Only device events (the kernels, memcpy and memset) are counted there; on the CPU
    every operator's self time. The shares of ``top`` plus an ``(other)`` row sum to 1."""
    if device_type == "cuda":
        rows = [(e.key, float(e.self_device_time_total), e.count) for e in events
                if str(getattr(e, "device_type", "")).endswith(("CUDA", "PrivateUse1")) and e.self_device_time_total > 0]
        unit = "self_device_time_total of device events (kernels)"
    else:
        rows = [(e.key, float(e.self_cpu_time_total), e.count) for e in events if e.self_cpu_time_total > 0]
        unit = "self_cpu_time_total of operators"
    rows.sort(key=lambda r: r[1], reverse=True)
    total = sum(r[1] for r in rows)
    head, rest = rows[:top], rows[top:]
    out = [{"name": k[:120], "time": t, "share": t / total if total else 0.0, "calls": c} for k, t, c in head]
    if rest:
        t = sum(r[1] for r in rest)
        out.append({"name": f"(other: {len(rest)} entries)", "time": t, "share": t / total if total else 0.0,
                    "calls": sum(r[2] for r in rest)})
    return {"unit": "us", "total": total, "sort": unit, "top": out}


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


# -- scaling bench gpu: the scale path on one real GPU, in one command --------------------------
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
    from trainer.parallel import close_process_group, ensure_process_group

    created = ensure_process_group(device, single=True)
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
            close_process_group()
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


