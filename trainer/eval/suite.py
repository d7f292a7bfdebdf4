"""Many metrics, one model: encode the benchmarks once, score them all in one batched pass.

Built once (per run or per ``scaling eval``) and called on every checkpoint to evaluate:
``EvalSuite.from_data(data_dir, names, tokenizer, vocab).run(model) -> {name: accuracy}``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scaling.datadir import BENCHMARKS, count_column
from scaling.errors import ConfigError
from trainer.eval.benchmarks import load_pairs, pair_file
from trainer.eval.results import MetricResult
from trainer.eval.scoring import (CONVENTIONS, DTYPES, Encoded, SlamkitRules, check_scoring, encode_segments,
                                  encode_slamkit, sequence_nll, special_tokens)


@dataclass(frozen=True)
class EncodedBenchmark:
    name: str
    ids: list[str]
    pos: list[Encoded]
    neg: list[Encoded]
    meta: list[dict]  # each item without its segments (ZeroSpeech: group, task, files, gold columns)


def encoder(tokenizer, vocab, convention: str = "ours", slamkit: SlamkitRules | None = None):
    """``encode(item, member, where) -> Encoded`` for the named convention (``slamkit``: the SlamKit
    tokeniser kind, dropped label and BOS/EOS of ``slamkit``, default the interleaved tokeniser's)."""
    if convention not in CONVENTIONS:
        raise ConfigError(f"unknown scoring convention; known: {list(CONVENTIONS)}", field="convention", value=convention)
    if convention == "ours":
        return lambda it, member, where: encode_segments(it[member], tokenizer, vocab, item=where)
    rules = slamkit or SlamkitRules()
    frame = special_tokens(tokenizer) if rules.tokeniser == "interleaved" else None
    return lambda it, member, where: encode_slamkit(it[member], tokenizer, vocab, item=where,
                                                    cross_modal=bool(it.get("cross_modal")), frame=frame, rules=rules)


class EvalSuite:
    """Encoded pairs of several benchmarks; ``run(model)`` is cheap to call repeatedly."""

    def __init__(self, benchmarks: dict[str, list[dict]], tokenizer, vocab, *, norm: str = "mean",
                 span: str = "whole", batch_size: int = 32, convention: str = "ours",
                 sources: dict[str, str] | None = None, slamkit: SlamkitRules | None = None,
                 dtype: str | None = None):
        """``slamkit``: what ``convention="slamkit"`` follows (tokeniser kind, dropped label; default
        :class:`SlamkitRules`); ``dtype``: the scoring precision (``sequence_nll``; None: training's)."""
        check_scoring(norm, span)
        if convention == "slamkit" and span != "whole":
            raise ConfigError("SlamKit scores the whole sequence only; use --span whole with --convention slamkit",
                              field="span", value=span)
        if dtype is not None and dtype not in DTYPES:
            raise ConfigError(f"unknown scoring dtype; known: {list(DTYPES)}", field="dtype", value=dtype)
        if slamkit is not None and convention != "slamkit":
            raise ConfigError("SlamKit's tokeniser rules apply to --convention slamkit only", field="slamkit_tokeniser",
                              value=slamkit.tokeniser)
        self.norm, self.span, self.batch_size, self.convention = norm, span, batch_size, convention
        self.dtype = dtype
        self.slamkit = (slamkit or SlamkitRules()) if convention == "slamkit" else None
        self.settings = {"convention": convention}
        if dtype is not None:
            self.settings["dtype"] = dtype
        if self.slamkit is not None:
            self.settings.update(self.slamkit.settings(tokenizer))
        encode = encoder(tokenizer, vocab, convention, self.slamkit)
        self.benchmarks: dict[str, EncodedBenchmark] = {}
        for name, items in benchmarks.items():
            ids, pos, neg = [], [], []
            for it in items:
                where = f"{name}:{it['id']}"
                ids.append(str(it["id"]))
                for member, out in (("positive", pos), ("negative", neg)):
                    try:
                        out.append(encode(it, member, where))
                    except ConfigError as e:  # name the file the item came from, and the member
                        if not (sources and name in sources) or e.source:
                            raise
                        raise ConfigError(e.reason, source=sources[name], field=f"{member}.{e.field or 'segments'}",
                                          value=e.value) from None
            meta = [{k: v for k, v in it.items() if k not in ("positive", "negative")} for it in items]
            self.benchmarks[name] = EncodedBenchmark(name, ids, pos, neg, meta)

    @classmethod
    def from_data(cls, data_dir: str | Path, names, tokenizer, vocab, *, max_items: int | None = None,
                  norm: str = "mean", span: str = "whole", batch_size: int = 32,
                  convention: str = "ours", slamkit: SlamkitRules | None = None,
                  dtype: str | None = None) -> "EvalSuite":
        """Benchmarks by name from a data folder (or its benchmarks folder), in any layout ``load_pairs``
        understands. Generation metrics (``genppl``) are not pair benchmarks: ``scaling eval`` runs them."""
        for n in names:
            if n in BENCHMARKS and BENCHMARKS[n].kind != "pairs":
                raise ConfigError(f"{n!r} is a {BENCHMARKS[n].kind} metric, not a pair benchmark; `scaling eval` runs it",
                                  field="benchmarks", value=n)
        sources = {}
        for n in names:
            f = pair_file(data_dir, n)
            sources[n] = str(f) if f is not None else str(Path(data_dir) / n)
        return cls({n: load_pairs(data_dir, n, max_items, vocab.n_units) for n in names}, tokenizer, vocab,
                   norm=norm, span=span, batch_size=batch_size, convention=convention, sources=sources,
                   slamkit=slamkit, dtype=dtype)

    @property
    def names(self) -> list[str]:
        return list(self.benchmarks)

    def run_detailed(self, model, *, n_resamples: int = 1000, seed: int = 0) -> dict[str, MetricResult]:
        """Per-item results and a bootstrap interval per metric (all sequences scored in one pass)."""
        seqs, groups = [], []
        for b in self.benchmarks.values():
            n = len(b.ids)
            # a pair's members share their common prefix (a StoryCloze story is scored once)
            groups += [(len(seqs) + i, len(seqs) + n + i) for i in range(n)]
            seqs += b.pos + b.neg
        was_training = model.training
        model.eval()
        try:
            nll = sequence_nll(model, seqs, batch_size=self.batch_size, groups=groups, dtype=self.dtype)
        finally:
            model.train(was_training)
        val, cnt = nll.value(self.norm, self.span), nll.count(self.span)
        out, at = {}, 0
        for name, b in self.benchmarks.items():
            n = len(b.ids)
            p, q = slice(at, at + n), slice(at + n, at + 2 * n)
            out[name] = MetricResult.of_pairs(name, b.meta, val[p], val[q], cnt[p], cnt[q], norm=self.norm,
                                              span=self.span, convention=self.convention,
                                              settings=self.settings).with_ci(n_resamples=n_resamples, seed=seed)
            at += 2 * n
        return out

    def run(self, model) -> dict[str, float]:
        """Accuracy per benchmark, and its item count (column ``<name>_n``, for binomial intervals)."""
        out = {}
        for k, r in self.run_detailed(model, n_resamples=0).items():
            out[k] = r.accuracy
            out[count_column(k)] = len(r.cluster_scores())  # independent units (ZeroSpeech: groups)
        return out


def check_benchmarks(data_dir: str | Path, names, tokenizer, *, max_items: int | None = None, vocab=None,
                     convention: str = "ours", **kw) -> EvalSuite:
    """Read, check and encode every item of the benchmarks ``names`` that a run (or a sweep's runs) will
    evaluate, before anything trains: a file that is missing or empty, a line that is not a JSON object, a
    duplicate id, a segment without units or text, a unit outside the tokenizer's inventory, a generation
    metric among pair benchmarks, an item the tokenizer cannot encode, are each a ConfigError naming the
    file, the line or item, and the field. Returns the encoded :class:`EvalSuite` (what the run evaluates
    with, so the check costs no second pass). ``vocab``: the tokenizer's SpeechVocab (derived when None)."""
    from trainer.data.tokenizer import SpeechVocab

    names = list(names)
    if not names:
        return EvalSuite({}, tokenizer, vocab, convention=convention)
    vocab = vocab or SpeechVocab.of(tokenizer)
    return EvalSuite.from_data(data_dir, names, tokenizer, vocab, max_items=max_items, convention=convention, **kw)
