"""Many metrics, one model: encode the benchmarks once, score them all in one batched pass.

Built once (per run or per ``scaling eval``) and called on every checkpoint to evaluate:
``EvalSuite.from_data(data_dir, names, tokenizer, vocab).run(model) -> {name: accuracy}``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


from trainer.eval.results import MetricResult
from trainer.eval.scoring import Encoded, check_scoring, encode_segments, pair_scores, sequence_nll


@dataclass(frozen=True)
class EncodedBenchmark:
    name: str
    ids: list[str]
    pos: list[Encoded]
    neg: list[Encoded]


class EvalSuite:
    """Encoded pairs of several benchmarks; ``run(model)`` is cheap to call repeatedly."""

    def __init__(self, benchmarks: dict[str, list[dict]], tokenizer, vocab, *, norm: str = "mean",
                 span: str = "whole", batch_size: int = 32):
        check_scoring(norm, span)
        self.norm, self.span, self.batch_size = norm, span, batch_size
        self.benchmarks: dict[str, EncodedBenchmark] = {}
        for name, items in benchmarks.items():
            ids, pos, neg = [], [], []
            for it in items:
                where = f"{name}:{it['id']}"
                ids.append(str(it["id"]))
                pos.append(encode_segments(it["positive"], tokenizer, vocab, item=where))
                neg.append(encode_segments(it["negative"], tokenizer, vocab, item=where))
            self.benchmarks[name] = EncodedBenchmark(name, ids, pos, neg)

    @classmethod
    def from_data(cls, data_dir: str | Path, names, tokenizer, vocab, *, max_items: int | None = None,
                  norm: str = "mean", span: str = "whole", batch_size: int = 32) -> "EvalSuite":
        """Benchmarks by name from a data folder, in any layout ``load_pairs`` understands."""
        from trainer.eval.benchmarks import load_pairs

        return cls({n: load_pairs(data_dir, n, max_items) for n in names}, tokenizer, vocab,
                   norm=norm, span=span, batch_size=batch_size)

    @property
    def names(self) -> list[str]:
        return list(self.benchmarks)

    def run_detailed(self, model, *, n_resamples: int = 1000, seed: int = 0) -> dict[str, MetricResult]:
        """Per-item results and a bootstrap interval per metric (all sequences scored in one pass)."""
        seqs = [s for b in self.benchmarks.values() for s in b.pos + b.neg]
        was_training = model.training
        model.eval()
        try:
            nll = sequence_nll(model, seqs, batch_size=self.batch_size)
        finally:
            model.train(was_training)
        val, cnt = nll.value(self.norm, self.span), nll.count(self.span)
        out, at = {}, 0
        for name, b in self.benchmarks.items():
            n = len(b.ids)
            p, q = slice(at, at + n), slice(at + n, at + 2 * n)
            out[name] = MetricResult(name, b.ids, val[p], val[q], cnt[p], cnt[q], pair_scores(val[p], val[q]),
                                     norm=self.norm, span=self.span).with_ci(n_resamples=n_resamples, seed=seed)
            at += 2 * n
        return out

    def run(self, model) -> dict[str, float]:
        """Accuracy per benchmark."""
        return {k: r.accuracy for k, r in self.run_detailed(model, n_resamples=0).items()}


def checkpoint_entry(suite: EvalSuite | None, model, *, tokens: int, flops: float, **extra) -> dict:
    """One ``evals`` entry of a run record (and a metrics.jsonl row): the compute so far and each metric.

    ``extra`` carries what else was measured at that point (e.g. ``val_loss_speech``, ``step``, ``cooldown``).
    """
    metrics = suite.run(model) if suite is not None and suite.names else {}
    return {"tokens": int(tokens), "flops": float(flops), **extra, **metrics}
