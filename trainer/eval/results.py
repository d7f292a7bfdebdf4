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
    #: ZeroSpeech: the official aggregation unit of each pair (lexical: id; syntactic: type/subtype/id).
    #: The accuracy is the mean over groups of the mean within each, and the bootstrap resamples groups.
    #: None: every pair is its own group.
    groups: list | None = None
    task: str | None = None  # "lexical" / "syntactic" for ZeroSpeech sets
    files: list | None = None  # (positive file, negative file) per pair, for submission files
    labels: dict = field(default_factory=dict)  # per-pair columns for the breakdown tables
    convention: str = "ours"
    #: how the items were scored beyond norm and span: convention, dtype, SlamKit's rules (label_drop_id,
    #: slamkit_tokeniser, ...), from ``EvalSuite.settings``
    settings: dict = field(default_factory=dict)

    @classmethod
    def of_pairs(cls, name: str, items: list[dict], nll_pos, nll_neg, n_pos=None, n_neg=None, *, norm: str = "mean",
                 span: str = "whole", convention: str = "ours", settings: dict | None = None) -> "MetricResult":
        """The result of scored pairs; ZeroSpeech pairs (with ``group`` and ``task``) carry what the
        official aggregation needs."""
        from trainer.eval.scoring import pair_scores

        nll_pos, nll_neg = np.asarray(nll_pos, dtype=np.float64), np.asarray(nll_neg, dtype=np.float64)
        ones = np.ones(len(items), dtype=np.int64)
        zs = bool(items) and all("group" in it and "task" in it for it in items)
        labels = {c: [it.get(c) for it in items] for c in ("frequency", "type", "subtype")
                  if zs and all(c in it for it in items)}
        return cls(name, [str(it["id"]) for it in items], nll_pos, nll_neg,
                   ones if n_pos is None else np.asarray(n_pos), ones if n_neg is None else np.asarray(n_neg),
                   pair_scores(nll_pos, nll_neg), norm=norm, span=span,
                   groups=[it["group"] for it in items] if zs else None, task=items[0]["task"] if zs else None,
                   files=[tuple(it["files"]) for it in items] if zs else None, labels=labels, convention=convention,
                   settings=dict(settings or {}))

    def cluster_scores(self) -> np.ndarray:
        """One score per independent unit: the group means, or the pair scores."""
        if self.groups is None:
            return np.asarray(self.scores, dtype=np.float64)
        from trainer.eval.zerospeech import group_means

        return group_means(self.groups, self.scores)[1]

    @property
    def accuracy(self) -> float:
        s = self.cluster_scores()
        return float(np.mean(s)) if len(s) else float("nan")

    @property
    def n_items(self) -> int:
        return len(self.scores)

    def official(self) -> dict | None:
        """The official ZeroSpeech summary (``all``, ``in_vocab``, per-band / per-type tables) or None."""
        if self.task is None or self.groups is None:
            return None
        from trainer.eval.zerospeech import aggregate

        return aggregate(self.task, self.groups, self.scores, self.labels)

    def with_ci(self, *, n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> "MetricResult":
        # resample the groups (ids), not the pairs: the pairs of one id share the word and are not independent
        self.ci = bootstrap_ci(self.cluster_scores(), n_resamples=n_resamples, level=level, seed=seed)
        return self

    def summary(self) -> dict:
        out = {"accuracy": self.accuracy, "ci_low": self.ci[0], "ci_high": self.ci[1], "items": self.n_items,
               "norm": self.norm, "span": self.span, "convention": self.convention}
        out.update({k: v for k, v in self.settings.items() if k not in out})
        off = self.official()
        if off is not None:
            out.update({k: v for k, v in off.items() if k not in ("all",)})
        return out

    def rows(self) -> list[dict]:
        out = [{"id": i, "nll_pos": float(p), "nll_neg": float(q), "n_tokens_pos": int(a), "n_tokens_neg": int(b),
                "score": float(s)}
               for i, p, q, a, b, s in zip(self.ids, self.nll_pos, self.nll_neg, self.n_tokens_pos,
                                           self.n_tokens_neg, self.scores)]
        if self.groups is not None:  # ZeroSpeech: the aggregation group and the two files of each pair
            for r, g, (fp, fn) in zip(out, self.groups, self.files):
                r.update(group=g, file_pos=fp, file_neg=fn)
        return out

    def write_csv(self, path: str | Path) -> Path:
        """Per-item CSV (columns PER_ITEM_COLUMNS, + group, file_pos, file_neg for ZeroSpeech sets),
        written under a temporary name and renamed."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        cols = PER_ITEM_COLUMNS + (("group", "file_pos", "file_neg") if self.groups is not None else ())
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            for r in self.rows():
                w.writerow({**r, "nll_pos": repr(r["nll_pos"]), "nll_neg": repr(r["nll_neg"])})
        tmp.replace(path)
        return path


def format_table(results: dict[str, MetricResult]) -> str:
    """Metric, accuracy, 95% CI, items: one line per metric."""
    lines = [f"{'metric':<12} {'accuracy':>9} {'95% CI':>17} {'items':>6}"]
    extra = []
    for name, r in results.items():
        ci = f"[{r.ci[0]:.4f}, {r.ci[1]:.4f}]"
        lines.append(f"{name:<12} {r.accuracy:>9.4f} {ci:>17} {r.n_items:>6}")
        off = r.official()
        if off is None:
            continue
        if "in_vocab" in off:
            lines.append(f"{name + ' inv':<12} {off['in_vocab']:>9.4f} {'':>17} {'':>6}")
        for key in ("by_frequency", "by_type", "by_subtype"):
            if off.get(key):
                extra.append(f"{name} {key.replace('_', ' ')} (groups, mean, std)")
                extra += [f"  {t['label']:<24} {t['n']:>6} {t['score']:.4f} {t['std']:.4f}" for t in off[key]]
    return "\n".join(lines + extra)


def results_json(results: dict[str, MetricResult], **meta) -> dict:
    """``{"metrics": {name: {accuracy, ci_low, ci_high, items, norm, span, convention, + settings}}, **meta}``."""
    return {**meta, "metrics": {k: r.summary() for k, r in results.items()}}
