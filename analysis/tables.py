"""Coefficient tables (LaTeX and Markdown) of the parametric fits, with bootstrap intervals."""
from __future__ import annotations

from .fits.parametric import ParametricFit

COLUMNS = (("E", "E", "E"), ("A", "A", "A"), ("B", "B", "B"), ("alpha", r"$\alpha$", "α"),
           ("beta", r"$\beta$", "β"), ("a", "$a$", "a"), ("b", "$b$", "b"), ("G", "$G$", "G"))


def _cell(fit: ParametricFit, name: str, latex: bool) -> str:
    v = getattr(fit, name)
    s = f"{v:.4g}" if name in ("A", "B", "G") else f"{v:.3f}"
    ci = fit.ci.get(name)
    if ci:
        lo, hi = (f"{x:.4g}" if name in ("A", "B", "G") else f"{x:.3f}" for x in ci)
        s = f"{s} [{lo}, {hi}]" if not latex else rf"{s} \scriptsize{{[{lo}, {hi}]}}"
    return s


def coefficient_rows(fits: dict) -> dict[str, ParametricFit]:
    """Label -> ParametricFit, from a ``{label: fit or fit dict}`` mapping (errors skipped)."""
    out = {}
    for label, f in fits.items():
        if isinstance(f, dict):
            if not f or "error" in f:
                continue
            f = ParametricFit.from_dict(f)
        out[label] = f
    return out


def latex_table(fits: dict, *, caption: str = "Fitted $L(N, D) = E + A/N^\\alpha + B/D^\\beta$ "
                "with 95\\% bootstrap intervals.", label: str = "tab:scaling-coefficients") -> str:
    """A booktabs ``table`` with one row per fit (label -> ParametricFit or its dict)."""
    rows = coefficient_rows(fits)
    head = " & ".join(["fit"] + [c[1] for c in COLUMNS])
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{l" + "r" * len(COLUMNS) + "}",
             r"\toprule", head + r" \\", r"\midrule"]
    for lab, f in rows.items():
        cells = [lab.replace("_", r"\_")] + [_cell(f, c[0], True) for c in COLUMNS]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption}}}", rf"\label{{{label}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def markdown_table(fits: dict) -> str:
    """The same table in Markdown (intervals in brackets)."""
    rows = coefficient_rows(fits)
    lines = ["| fit | " + " | ".join(c[2] for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for lab, f in rows.items():
        lines.append(f"| {lab} | " + " | ".join(_cell(f, c[0], False) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"
