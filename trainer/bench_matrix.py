"""``scaling bench gpu --matrix``: the fast recipe, switch by switch, against plain transformers in one run.

Groups of variants on the shapes users train (``tiny``: toy shapes, the same code in seconds on a CPU):

- Qwen2.5-0.5B (+502 speech rows), seq 2048, 16 rows per optimiser step at micro-batch 8: plain
  transformers, then cumulatively compile, varlen attention, bf16 compute parameters, the compiled
  chunked CE, Liger's fused norm/SwiGLU/RoPE, micro-batch 16, selective (per-op) checkpointing;
- Qwen2.5-1.5B: plain and the 0.5B's best switches;
- the Qwen2.5-7B width with 4 layers at micro-batch 4: plain, the best, the best with full and with
  selective checkpointing;
- the full Qwen2.5-7B in one configuration (pure bf16, the best switches, full checkpointing, micro-batch 1).

A switch that cannot run here (Liger without CUDA, say) or fails (out of memory, a compile error) is
recorded with its reason, and the cumulative chain goes on without it. "Best" is the highest tokens/s
whose first-step loss agrees with plain's; a group whose best would not fit takes the largest
micro-batch ``scaling memory`` fits in 90% of the device. Every variant of a group trains on the same
rows, so the first-step losses agree to float rounding (fp32 on a CPU: 1e-6). The JSON is rewritten
after every variant (a run stopped by its time limit keeps what it measured); the best variant of the
first group is profiled at the end (device kernels counted once, shares summing to 1); the best
configuration of each group is printed as a ``train:`` block.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, replace

from scaling.shapes import DEMO

# the cumulative chain of the first group, switch by switch
CHAIN = ("compile", "varlen", "bf16p", "cce", "ligerk", "mb*", "sac")
LOSS_AGREEMENT = {"amp-bf16": 1e-6, "bf16": 2e-2}  # relative, on a CPU (fp32 compute; bf16 weights)


@dataclass(frozen=True)
class Group:
    name: str
    model: str  # a shape name
    layers: int | None
    micro: int
    rows: int  # rows per optimiser step (per process)
    precision: str = "amp-bf16"
    baseline: bool = True


def groups(tiny: bool) -> list[Group]:
    if tiny:
        return [Group("0.5B (toy-xs)", "toy-xs", None, 2, 4), Group("1.5B (toy-s)", "toy-s", None, 2, 4),
                Group("7B width, 4 layers (toy-ml)", "toy-ml", 4, 2, 2),
                Group("7B (toy-m)", "toy-m", None, 1, 1)]
    return [Group("qwen2.5-0.5b", "qwen2.5-0.5b", None, 8, 16), Group("qwen2.5-1.5b", "qwen2.5-1.5b", None, 4, 16),
            Group("qwen2.5-7b width, 4 layers", "qwen2.5-7b", 4, 4, 4),
            Group("qwen2.5-7b", "qwen2.5-7b", None, 1, 1, precision="bf16", baseline=False)]


def _shape(g: Group, tiny: bool):
    from scaling.memory import speech_shape

    shape = DEMO[g.model] if tiny else speech_shape(g.model)
    return replace(shape, num_layers=g.layers) if g.layers else shape


def _usable(feature: str, device) -> str | None:
    """Why a switch cannot run on this device (None: it can)."""
    from trainer.kernels.chunked_ce import compile_unavailable
    from trainer.kernels.liger import liger_kernels_unavailable

    if feature in ("compile", "cce"):
        return compile_unavailable(device)
    if feature == "ligerk":
        return liger_kernels_unavailable(device)
    if feature == "varlen" and device.type == "cuda":
        from trainer.kernels.varlen import varlen_available

        return varlen_available(device)
    return None


def _fit_micro(shape, g: Group, features: list[str], seq: int, device) -> int:
    """The largest divisor of the group's rows whose step ``scaling memory`` fits in 90% of the device: the
    trainer's own ``micro_batch_size: auto`` (trainer.autotune) for the variant's train switches; 1 when
    none fits."""
    from dataclasses import replace as with_

    from scaling.errors import ConfigError
    from trainer.autotune import resolve_memory
    from trainer.bench import _train_options, parse_variant

    v = parse_variant("+".join(features))
    tc = with_(_train_options(v, g.precision), seq_len=seq, batch_size=g.rows, micro_batch_size="auto",
               memory_fraction=0.9)
    try:
        return resolve_memory(shape, tc, world=1, device=device, attn="varlen" if v.varlen else "sdpa").micro_batch_size
    except ConfigError:
        return 1


def bench_matrix(*, device="cuda", tiny: bool = False, steps: int = 3, warmup: int = 2, seed: int = 0,
                 compile_backend: str = "inductor", time_limit_s: float | None = None, on_update=None,
                 profile: bool = True) -> dict:
    """Run the matrix; returns the record (also passed to ``on_update`` after every variant)."""
    import torch

    from trainer.bench import _ratios, bench_throughput, parse_variant
    from trainer.parallel import world

    device = torch.device(device)
    t0 = time.perf_counter()
    seq = 64 if tiny else 2048
    rec = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "tiny": tiny, "seq": seq, "steps": steps, "warmup": warmup, "world_size": world()[1],
           "torch": torch.__version__, "groups": [], "complete": False}

    def update():
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        if on_update is not None:
            on_update(rec)

    def out_of_time() -> bool:
        return time_limit_s is not None and time.perf_counter() - t0 > time_limit_s

    def run(g: Group, shape, entry: dict, features: list[str], micro: int) -> dict | None:
        """One variant of group ``g`` (``features`` empty: plain); its record, or None when it failed."""
        name = "+".join(features + ([f"mb{micro}"] if micro != g.micro and features else [])) or "baseline"
        if out_of_time():
            entry["skipped"].append({"variant": name, "reason": "time limit"})
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = bench_throughput(shape, seq=seq, micro_batch=g.micro, accumulation=g.rows // g.micro, steps=steps,
                                     warmup=warmup, device=device, variants=[name], seed=seed, model_name=g.name,
                                     precision=g.precision, compile_backend=compile_backend)[0]
        except Exception as e:  # noqa: BLE001 - out of memory, a compile error: recorded, the matrix goes on
            if device.type == "cuda":
                torch.cuda.empty_cache()
            entry["failed"].append({"variant": name, "error": f"{type(e).__name__}: {str(e)[:500]}"})
            update()
            return None
        entry["results"].append(r)
        _ratios(entry["results"])  # against the group's plain run: speed, memory, first-step loss
        base = next((x for x in entry["results"] if x["variant"] == "baseline"), None)
        for x in entry["results"]:
            d = x["first_loss_diff_vs_baseline"]
            x["first_loss_rel_diff"] = None if d is None else d / abs(base["first_loss"])
        update()
        return r

    def agrees(r: dict, entry: dict) -> bool:
        d = r.get("first_loss_rel_diff")
        tol = LOSS_AGREEMENT[r["precision"]] if r["device"] == "cpu" else 5e-3  # bf16 compute on a GPU
        return all(math.isfinite(x) for x in r["losses"]) and (d is None or d <= tol)

    best_features: list[str] = []
    best_micro_factor = 1
    for gi, g in enumerate(groups(tiny)):
        shape = _shape(g, tiny)
        entry = {"group": g.name, "model": g.model, "layers": g.layers, "micro_batch": g.micro, "rows_per_step": g.rows,
                 "precision": g.precision, "results": [], "skipped": [], "failed": []}
        rec["groups"].append(entry)
        if g.baseline and (tiny or gi < 3):
            run(g, shape, entry, [], g.micro)
        if gi == 0:  # the cumulative chain
            on: list[str] = []
            micro = g.micro
            for f in CHAIN:
                if f == "mb*":
                    cand_micro = min(2 * g.micro, g.rows)
                    r = run(g, shape, entry, list(on), cand_micro)
                    if r is not None:
                        micro = cand_micro
                    continue
                why = _usable(f, device)
                if why is not None:
                    entry["skipped"].append({"variant": "+".join(on + [f]), "reason": why})
                    update()
                    continue
                if run(g, shape, entry, on + [f], micro) is not None:
                    on.append(f)
            ok = [r for r in entry["results"] if agrees(r, entry)]
            best = max(ok, key=lambda r: r["tokens_per_s"]) if ok else None
            if best is not None and best["variant"] != "baseline":
                v = parse_variant(best["variant"])
                best_features = [f for f in CHAIN if f != "mb*" and getattr(v, f, False)]
                best_micro_factor = (v.micro or g.micro) // g.micro
        else:
            feats = [f for f in best_features if f not in ("ckpt", "sac")]
            plans = [feats] if gi == 1 else [feats, feats + ["ckpt"], feats + ["sac"]] if gi == 2 else [
                [f for f in feats if f != "bf16p"] + ["ckpt"]]  # the full 7B: pure bf16 (bf16p is for amp-bf16)
            for features in plans:
                # the 0.5B's micro-batch factor, as far as `scaling memory` says this shape fits
                micro = min(g.micro * best_micro_factor, _fit_micro(shape, g, features or ["chunked"], seq, device))
                while g.rows % micro:
                    micro -= 1
                run(g, shape, entry, features, micro)
        ok = [r for r in entry["results"] if agrees(r, entry)]
        entry["loss_agreement"] = all(agrees(r, entry) for r in entry["results"])
        if ok:
            b = max(ok, key=lambda r: r["tokens_per_s"])
            entry["best"] = {"variant": b["variant"], "tokens_per_s": b["tokens_per_s"], "mfu": b["mfu"],
                             "speedup_vs_baseline": b.get("speedup_vs_baseline"), "train": b["train"]}
        update()
    if profile and rec["groups"] and rec["groups"][0].get("best") and not out_of_time():
        g0 = groups(tiny)[0]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = bench_throughput(_shape(g0, tiny), seq=seq, micro_batch=g0.micro, accumulation=g0.rows // g0.micro,
                                     steps=1, warmup=1, device=device, variants=[rec["groups"][0]["best"]["variant"]],
                                     seed=seed, model_name=g0.name, precision=g0.precision, compile_backend=compile_backend,
                                     profile=True)[0]
            rec["profile"] = {"variant": r["variant"], **r["profile"]}
        except Exception as e:  # noqa: BLE001
            rec["profile"] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
    rec["complete"] = not out_of_time()
    update()
    return rec


def train_block(best: dict) -> str:
    """A group's best configuration as the ``train:`` block of a sweep file."""
    if best["variant"] == "baseline":
        return "train: {}  # plain transformers was the fastest here: no switch of the fast recipe"
    lines = ["train:"]
    for k, v in best["train"].items():
        lines.append(f"  {k}: {str(v).lower() if isinstance(v, bool) else v}")
    return "\n".join(lines)


def format_matrix(rec: dict) -> str:
    head = f"{'variant':<44} {'tokens/s':>11} {'x plain':>8} {'MFU':>7} {'peak GiB':>9} {'est. GiB':>9} {'loss diff':>10}"
    out = [f"scaling bench gpu --matrix on {rec['device_name']} ({rec['device']}){' --tiny' if rec['tiny'] else ''}, "
           f"{rec['world_size']} process(es), {rec.get('seconds', 0)} s"]
    for e in rec["groups"]:
        out += ["", f"{e['group']}: {e['rows_per_step']} rows x seq {rec['seq']} per step, {e['precision']}", head,
                "-" * len(head)]
        for r in e["results"]:
            mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
            sp = f"{r['speedup_vs_baseline']:.2f}" if r.get("speedup_vs_baseline") is not None else "-"
            d = r.get("first_loss_rel_diff")
            out.append(f"{r['variant']:<44} {r['tokens_per_s']:>11.1f} {sp:>8} {mfu:>7} {r['peak_memory_gib']:>9.3f} "
                       f"{r['memory_estimate_gib']:>9.3f} {'-' if d is None else f'{d:.1e}':>10}")
        for s in e["skipped"]:
            out.append(f"  skipped {s['variant']}: {s['reason']}")
        for f in e["failed"]:
            out.append(f"  FAILED {f['variant']}: {f['error'][:200]}")
        if e.get("best"):
            out.append(f"best for {e['group']} ({e['best']['variant']}):")
            out.append(train_block(e["best"]))
    if rec.get("profile") and "top" in rec["profile"]:
        p = rec["profile"]
        out += ["", f"profile of {p['variant']} (2 steps, {p['sort']}; shares sum to 1):"]
        out += [f"  {t['share']:6.1%}  {t['name'][:90]}" for t in p["top"][:15]]
    if rec["device"] == "cpu":
        out.append("(CPU: peak memory is the process's ru_maxrss; MFU needs a known GPU)")
    return "\n".join(out)
