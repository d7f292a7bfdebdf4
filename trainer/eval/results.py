"""Evaluation results: per-item scores, accuracy with a bootstrap interval, table/CSV/JSON output."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PER_ITEM_COLUMNS = ("id", "nll_pos", "nll_neg", "n_tokens_pos", "n_tokens_neg", "score")


def bootstrap_ci(scores, *, n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``scores`` (items resampled with replacement)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0 or n_resamples <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = s[rng.integers(0, s.size, size=(n_resamples, s.size))].mean(axis=1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    return float(lo), float(hi)


@dataclass
class MetricResult:
    """One benchmark on one model: item scores (1 / 0.5 / 0) and what they were computed from."""

    name: str
    ids: list[str]
    nll_pos: np.ndarray  # the scored value: mean or summed NLL over the chosen span
    nll_neg: np.ndarray
    n_tokens_pos: np.ndarray  # predicted tokens in the chosen span
    n_tokens_neg: np.ndarray
    scores: np.ndarray
    norm: str = "mean"
    span: str = "whole"
    ci: tuple[float, float] = field(default=(float("nan"), float("nan")))

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.scores)) if len(self.scores) else float("nan")

    @property
    def n_items(self) -> int:
        return len(self.scores)

    def with_ci(self, *, n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> "MetricResult":
        self.ci = bootstrap_ci(self.scores, n_resamples=n_resamples, level=level, seed=seed)
        return self

    def summary(self) -> dict:
        return {"accuracy": self.accuracy, "ci_low": self.ci[0], "ci_high": self.ci[1], "items": self.n_items,
                "norm": self.norm, "span": self.span}

    def rows(self) -> list[dict]:
        return [{"id": i, "nll_pos": float(p), "nll_neg": float(q), "n_tokens_pos": int(a), "n_tokens_neg": int(b),
                 "score": float(s)}
                for i, p, q, a, b, s in zip(self.ids, self.nll_pos, self.nll_neg, self.n_tokens_pos,
                                            self.n_tokens_neg, self.scores)]

    def write_csv(self, path: str | Path) -> Path:
        """Per-item CSV (columns PER_ITEM_COLUMNS), written under a temporary name and renamed."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=PER_ITEM_COLUMNS)
            w.writeheader()
            for r in self.rows():
                w.writerow({**r, "nll_pos": repr(r["nll_pos"]), "nll_neg": repr(r["nll_neg"])})
        tmp.replace(path)
        return path


def format_table(results: dict[str, MetricResult]) -> str:
    """Metric, accuracy, 95% CI, items: one line per metric."""
    lines = [f"{'metric':<12} {'accuracy':>9} {'95% CI':>17} {'items':>6}"]
    for name, r in results.items():
        ci = f"[{r.ci[0]:.4f}, {r.ci[1]:.4f}]"
        lines.append(f"{name:<12} {r.accuracy:>9.4f} {ci:>17} {r.n_items:>6}")
    return "\n".join(lines)


def results_json(results: dict[str, MetricResult], **meta) -> dict:
    """``{"metrics": {name: {accuracy, ci_low, ci_high, items, norm, span}}, **meta}``."""
    return {**meta, "metrics": {k: r.summary() for k, r in results.items()}}
