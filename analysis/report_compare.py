"""The report's "Arms compared" section: words chosen by the verdicts in ``fits["compare"]``
(analysis.compare), every number read from it."""
from __future__ import annotations

import numpy as np

#: How a verdict reads in a sentence about a difference "first - other".
_WORDS = {"lower": "lower", "higher": "higher", "not distinguishable": "not distinguishable at 95%",
          "no interval": "without an interval (bootstrap off or item counts missing)",
          "undefined": "undefined (a law with no compute-optimal frontier: a non-positive exponent)"}


def _num(x, digits: int = 4) -> str:
    return f"{x:.{digits}g}" if isinstance(x, (int, float)) and np.isfinite(x) else "–"


def _ci(ci, digits: int = 3) -> str:
    return f"[{_num(ci[0], digits)}, {_num(ci[1], digits)}]" if ci else "–"


def _frontier_lines(pair: dict, loss_col: str) -> list[str]:
    a0, a1 = pair["arms"]
    fr = pair["frontier"]
    if "error" in fr:
        return [f"Speech loss: not compared ({fr['error']}).", ""]
    rows = fr["budgets"]
    lines = [f"**Speech loss at equal compute** ({loss_col} on the fitted compute-optimal frontier L_opt(C), "
             "difference of the arms' bootstrap refits):", "",
             f"| budget C | L_opt {a0} | L_opt {a1} | difference | 95% interval | verdict |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['budget']:.3g} | {_num(r['loss_opt'][0])} | {_num(r['loss_opt'][1])} | "
                     f"{_num(r['difference'], 3)} | {_ci(r['ci'])} | {r['verdict']} |")
    d = [r["difference"] for r in rows if np.isfinite(r["difference"])]
    span = ("no finite difference" if not d else f"difference {_num(min(d), 3)} to {_num(max(d), 3)}" if len(d) > 1
            else f"difference {_num(d[0], 3)}")
    v = fr["verdict"]
    if v == "undefined":
        flat = [a for a, k in ((a0, 0), (a1, 1)) if not all(np.isfinite(r["loss_opt"][k]) for r in rows)]
        sentence = (f"At equal compute, the arms cannot be compared on the frontier: the law of {' and '.join(flat)} "
                    "has no compute-optimal frontier (a non-positive exponent).")
    elif v == "mixed":
        by = {}
        for r in rows:
            by.setdefault(r["verdict"], []).append(f"{r['budget']:.3g}")
        text = "; ".join(f"{_WORDS[k]} at C = {', '.join(b)}" for k, b in by.items())
        sentence = f"At equal compute, {a0}'s {loss_col} compared with {a1}'s is {text} ({span})."
    elif v in ("lower", "higher"):
        sentence = (f"At equal compute, **{a0}** reaches a {v} {loss_col} than {a1} at all {len(rows)} sampled "
                    f"budget(s) ({span}, every 95% interval excluding 0).")
    else:
        sentence = f"At equal compute, the {loss_col} of {a0} and {a1} is {_WORDS[v]} at every sampled budget ({span})."
    return lines + ["", sentence, ""]


def _metric_lines(pair: dict) -> list[str]:
    a0, a1 = pair["arms"]
    ms = pair.get("metrics") or {}
    if not ms:
        return []
    ok = {m: e for m, e in ms.items() if "error" not in e}
    lines = []
    if ok:
        C = next(iter(ok.values()))["budget"]
        lines += [f"**Metrics at the largest shared budget** (C = {C:.3g}; best point of each arm, the envelope):", "",
                  f"| metric | {a0} | {a1} | difference | 95% interval | verdict | items | interval |",
                  "|---|---|---|---|---|---|---|---|"]
        for m, e in ok.items():
            items = " / ".join(_num(n, 6) for n in e["n_items"])
            lines.append(f"| {m} | {_num(e['values'][0])} | {_num(e['values'][1])} | {_num(e['difference'], 3)} | "
                         f"{_ci(e['ci'])} | {e['verdict']} | {items} | {e['interval_method']} |")
        lines.append("")
        for m, e in ok.items():
            if e["better"]:
                worse = a1 if e["better"] == a0 else a0
                lines.append(f"- {m}: **{e['better']}** is better than {worse} ({a0} − {a1} = {_num(e['difference'], 3)} "
                             f"{_ci(e['ci'])}).")
            else:
                lines.append(f"- {m}: {a0} and {a1} are {_WORDS[e['verdict']]} ({a0} − {a1} = "
                             f"{_num(e['difference'], 3)} {_ci(e['ci'])}).")
    for m, e in ms.items():
        if "error" in e and not e.get("not_evaluated"):
            lines.append(f"- {m}: not compared ({e['error']}).")
    skipped = [m for m, e in ms.items() if e.get("not_evaluated")]
    if skipped:
        lines.append(f"- Not evaluated by either arm: {', '.join(skipped)}.")
    return lines + [""]


def _exponent_lines(pair: dict) -> list[str]:
    a0, a1 = pair["arms"]
    x = pair["exponent"]
    lines = ["**Compute-optimal exponent a** (N_opt ∝ C^a, parametric law):", "",
             "| arm | a | 95% interval |", "|---|---|---|"]
    for arm, a, ci in zip(pair["arms"], x["a"], x["ci"]):
        lines.append(f"| {arm} | {_num(a)} | {_ci(ci)} |")
    if x["intervals_overlap"] is None:
        overlap = "no intervals (bootstrap off)"
    else:
        overlap = "the two intervals overlap" if x["intervals_overlap"] else "the two intervals do not overlap"
    v = x["verdict"]
    diff = (f"a({a0}) − a({a1}) = {_num(x['difference'], 3)} {_ci(x['difference_ci'])}: "
            + (f"{a0}'s exponent is {v}" if v in ("lower", "higher") else _WORDS[v]))
    return lines + ["", f"{overlap.capitalize()}; {diff}.", ""]


def compare_section(fits: dict) -> list[str]:
    """Markdown lines of the comparison; when it could not be made (fewer than two arms with a parametric
    law) the section says why, so a reader of a multi-arm study is not left to guess."""
    cmp = fits.get("compare")
    if not cmp:
        return []
    if "error" in cmp:
        arms = [a for a in fits.get("arms", {}) if a != "textlm"]
        return [] if len(arms) < 2 else ["## Arms compared", "", f"Not compared: {cmp['error']}.", ""]
    loss_col = cmp.get("loss_col", fits.get("loss_col", "val_loss_speech"))
    lines = ["## Arms compared", "",
             f"Differences are {cmp['reference']} minus the other arm, with {cmp.get('level', 0.95):.0%} intervals; a "
             "difference is called lower or higher only when its interval excludes 0.", ""]
    for pair in cmp["pairs"]:
        a0, a1 = pair["arms"]
        if len(cmp["pairs"]) > 1:
            lines += [f"### {a0} vs {a1}", ""]
        bad = [a for a, ill in zip(pair["arms"], pair.get("ill_conditioned", [])) if ill]
        if bad:
            lines += [f"**CAUTION**: the parametric law of {', '.join(bad)} is ill-conditioned; the frontier and "
                      "exponent comparisons below inherit its uncertainty.", ""]
        lines += _frontier_lines(pair, loss_col) + _metric_lines(pair) + _exponent_lines(pair)
    return lines
