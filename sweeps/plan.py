"""The resolved grid as rows and as a table, before anything runs."""
from __future__ import annotations

from scaling.flops import count_params, flops_exact
from scaling.spec import RunSpec


def plan_rows(specs: list[RunSpec]) -> list[dict]:
    rows = []
    for s in specs:
        pc = count_params(s.shape)
        rows.append({
            "run_id": s.run_id, "arm": s.arm, "model": s.model, "params": pc.total,
            "non_embedding_params": pc.non_embedding, "tokens": s.tokens, "budget": s.budget,
            "flops": 6.0 * pc.total * s.tokens, "flops_exact": flops_exact(s.shape, s.tokens, s.train.seq_len),
            "steps": s.steps, "tokens_per_param": s.tokens / pc.total, "init": s.init,
        })
    return rows


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.2e}"


def format_plan(rows: list[dict], states: dict[str, str] | None = None) -> str:
    head = ["run_id", "arm", "model", "params", "non_emb", "tokens", "D/N", "flops(6ND)", "flops_exact", "steps"]
    if states is not None:
        head.append("state")
    table = [head]
    for r in rows:
        line = [r["run_id"], r["arm"], r["model"], f"{r['params']:,}", f"{r['non_embedding_params']:,}", f"{r['tokens']:,}",
                f"{r['tokens_per_param']:.1f}", _fmt(r["flops"]), _fmt(r["flops_exact"]), str(r["steps"])]
        if states is not None:
            line.append(states.get(r["run_id"], "pending"))
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table]
    tot_flops = sum(r["flops"] for r in rows)
    tot_tokens = sum(r["tokens"] for r in rows)
    out.append(f"{len(rows)} runs, {tot_tokens:,} tokens, {tot_flops:.3g} FLOPs (6ND), "
               f"{sum(r['flops_exact'] for r in rows):.3g} FLOPs (exact)")
    return "\n".join(out)
