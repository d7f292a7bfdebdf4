"""The resolved grid as rows and as a table, before anything runs.

GPU-hours are estimated from the exact FLOPs at a stated MFU and per-GPU peak (defaults: 40% of
an H100's 989 TFLOP/s bf16 dense; REFERENCE section 4 measured 28-40% for the 1.5B shape).
"""
from __future__ import annotations

from scaling.flops import count_params, flops_6nd, flops_exact, wsd_branch_tokens
from scaling.spec import RunSpec


def plan_rows(specs: list[RunSpec], *, mfu: float = 0.4, gpu_flops: float = 989e12) -> list[dict]:
    rows = []
    for s in specs:
        pc = count_params(s.shape)
        fx = flops_exact(s.shape, s.tokens, s.train.seq_len)
        rows.append({
            "run_id": s.run_id, "arm": s.arm, "model": s.model, "seed": s.seed, "params": pc.total,
            "non_embedding_params": pc.non_embedding, "tokens": s.tokens, "budget": s.budget,
            "flops": flops_6nd(pc.total, s.tokens), "flops_exact": fx,
            "steps": s.steps, "tokens_per_param": s.tokens / pc.total, "init": s.init,
            "schedule": s.train.schedule, "cooldowns": list(s.cooldowns), "lr": s.train.lr,
            "gpu_hours": fx / (mfu * gpu_flops) / 3600.0,
        })
    return rows


def plan_totals(sweep, specs: list[RunSpec], rows: list[dict], *, mfu: float = 0.4, gpu_flops: float = 989e12) -> dict:
    """Totals, and for a wsd sweep the compute of the equivalent cosine grid (one run per point)."""
    tot = {"runs": len(rows), "tokens": sum(r["tokens"] for r in rows), "flops": sum(r["flops"] for r in rows),
           "flops_exact": sum(r["flops_exact"] for r in rows), "gpu_hours": sum(r["gpu_hours"] for r in rows),
           "mfu": mfu, "gpu_flops": gpu_flops}
    cos_flops = 0.0
    any_wsd = False
    for s, r in zip(specs, rows):
        if s.cooldowns:
            any_wsd = True
            per_token = r["flops"] / r["tokens"]
            # cosine: one run per budget point, each from scratch
            cos_flops += per_token * (s.tokens + sum(s.cooldowns))
            # wsd: the stable trunk to `tokens` plus one decay branch per cooldown budget
            branch = wsd_branch_tokens(s.cooldowns, s.train.cooldown_frac)
            tot.setdefault("wsd_branch_tokens", 0)
            tot["wsd_branch_tokens"] += branch
            tot["flops"] += per_token * branch
        else:
            cos_flops += r["flops"]
    if any_wsd:
        tot["cosine_flops"] = cos_flops
        tot["saved_flops"] = cos_flops - tot["flops"]
    return tot


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.2e}"


def format_plan(rows: list[dict], states: dict[str, str] | None = None, totals: dict | None = None) -> str:
    head = ["run_id", "arm", "model", "params", "non_emb", "tokens", "D/N", "flops(6ND)", "flops_exact", "steps",
            "GPU-h"]
    if states is not None:
        head.append("state")
    table = [head]
    for r in rows:
        line = [r["run_id"], r["arm"], r["model"], f"{r['params']:,}", f"{r['non_embedding_params']:,}", f"{r['tokens']:,}",
                f"{r['tokens_per_param']:.1f}", _fmt(r["flops"]), _fmt(r["flops_exact"]), str(r["steps"]),
                f"{r['gpu_hours']:.3g}"]
        if r.get("cooldowns"):
            line[5] += f" (+{len(r['cooldowns'])} cooldowns)"
        if states is not None:
            line.append(states.get(r["run_id"], "pending"))
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table]
    tot_flops = sum(r["flops"] for r in rows)
    tot_tokens = sum(r["tokens"] for r in rows)
    out.append(f"{len(rows)} runs, {tot_tokens:,} tokens, {tot_flops:.3g} FLOPs (6ND), "
               f"{sum(r['flops_exact'] for r in rows):.3g} FLOPs (exact)")
    if totals is not None:
        out.append(f"estimated {totals['gpu_hours']:,.1f} GPU-hours at {totals['mfu']:.0%} MFU of "
                   f"{totals['gpu_flops']:.3g} FLOP/s per GPU")
        if "cosine_flops" in totals:
            out.append(f"wsd schedule: {totals['flops']:.3g} FLOPs (6ND, cooldown branches included) vs "
                       f"{totals['cosine_flops']:.3g} for one cosine run per grid point: saves {totals['saved_flops']:.3g} "
                       f"({totals['saved_flops'] / totals['cosine_flops']:.0%})")
    return "\n".join(out)
