"""Exactness of pairwise likelihood scoring against log-likelihoods computed independently."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from scaling.errors import ConfigError
from trainer.data.tokenizer import SpeechVocab
from trainer.eval.results import bootstrap_ci
from trainer.eval.scoring import Encoded, encode_segments, pair_scores, score_pairs, sequence_nll
from trainer.eval.suite import EvalSuite

VOCAB = SpeechVocab(unit_offset=10, speech=8, text=9, eos=0, size=510)
V = VOCAB.size
UNIFORM = (VOCAB.speech, VOCAB.unit_offset + 7)  # rows with equal logits: every transition costs log(V)


class FakeTokenizer:
    """Characters -> ids 1..7 (enough text tokens for the tests; no BPE)."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [1 + ord(c) % 7 for c in text]}


class Bigram(torch.nn.Module):
    """A bigram LM: the logits at a position depend on its token only (like a real LM's ``.logits``)."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        table = torch.randn(V, V, generator=g) * 2.0
        for r in UNIFORM:
            table[r] = 0.0
        self.table = torch.nn.Parameter(table)
        self.calls = 0

    def forward(self, input_ids, attention_mask=None):
        self.calls += 1
        return types.SimpleNamespace(logits=self.table[input_ids])

    def logprob(self) -> np.ndarray:  # independent reference, float64
        t = self.table.detach().double().numpy()
        return t - np.log(np.exp(t - t.max(1, keepdims=True)).sum(1, keepdims=True)) - t.max(1, keepdims=True)


def ref_nll(lp: np.ndarray, ids: list[int], start: int = 1) -> tuple[float, int]:
    """Summed NLL of predicting ids[t] for t >= max(start, 1), and the count."""
    ts = range(max(start, 1), len(ids))
    return float(sum(-lp[ids[t - 1], ids[t]] for t in ts)), len(ts)


def speech(units):
    return {"modality": "speech", "units": list(units)}


def text(s):
    return {"modality": "text", "text": s}


def hand_ids(segments) -> tuple[list[int], int]:
    """Token ids built by hand (not by encode_segments): marker at start and at each switch."""
    ids, prev, cont = [], None, 0
    for k, s in enumerate(segments):
        if k == len(segments) - 1:
            cont = len(ids)
        if s["modality"] != prev:
            ids.append(VOCAB.speech if s["modality"] == "speech" else VOCAB.text)
        if s["modality"] == "speech":
            ids += [u + VOCAB.unit_offset for u in s["units"]]
        else:
            ids += [1 + ord(c) % 7 for c in (s["text"] if k == 0 else " " + s["text"])]
        prev = s["modality"]
    return ids, cont


def random_items(rng, n, kinds=("ss", "st", "ts", "tt", "s")):
    words = ["the cat", "a dog", "ran home", "sat", "blue sky over the hill", "no"]
    items = []
    for i in range(n):
        kind = kinds[i % len(kinds)]

        def seg(m, lo=2, hi=30):
            return speech(rng.integers(0, 500, rng.integers(lo, hi))) if m == "s" else text(str(rng.choice(words)))

        if len(kind) == 1:
            items.append({"id": f"w{i}", "positive": [seg(kind)], "negative": [seg(kind)]})
        else:
            ctx = seg(kind[0])
            items.append({"id": f"sc{i}", "positive": [ctx, seg(kind[1])], "negative": [ctx, seg(kind[1])]})
    return items


def expected_accuracy(model, items, norm, span):
    lp = model.logprob()
    scores = []
    for it in items:
        vals = []
        for member in ("positive", "negative"):
            ids, cont = hand_ids(it[member])
            tot, n = ref_nll(lp, ids, 1 if span == "whole" else cont)
            vals.append(tot / n if norm == "mean" else tot)
        scores.append(1.0 if vals[0] < vals[1] - 1e-9 else (0.0 if vals[0] > vals[1] + 1e-9 else 0.5))
    return float(np.mean(scores)), scores


def test_encode_matches_hand_built_ids():
    tok = FakeTokenizer()
    segs = [speech([1, 2]), text("hi"), text("you"), speech([3]), speech([4])]
    enc = encode_segments(segs, tok, VOCAB)
    ids, cont = hand_ids(segs)
    assert enc.ids == ids and enc.cont_start == cont
    # markers exactly at the start and at the two switches (not between same-modality segments)
    assert [i for i, t in enumerate(enc.ids) if t in (VOCAB.speech, VOCAB.text)] == [0, 3, 11]


@pytest.mark.parametrize("norm", ["mean", "sum"])
@pytest.mark.parametrize("span", ["whole", "continuation"])
def test_accuracy_is_exact_against_independent_bigram(norm, span):
    rng = np.random.default_rng(1)
    items = random_items(rng, 40)
    model = Bigram(seed=3)
    want, want_scores = expected_accuracy(model, items, norm, span)
    assert 0.0 < want < 1.0  # a non-trivial mix of right and wrong
    suite = EvalSuite({"mix": items}, FakeTokenizer(), VOCAB, norm=norm, span=span, batch_size=7)
    res = suite.run_detailed(model)["mix"]
    assert res.accuracy == want
    assert res.scores.tolist() == want_scores
    # the recorded NLLs equal the independent ones
    lp = model.logprob()
    for k, it in enumerate(items):
        ids, cont = hand_ids(it["positive"])
        tot, n = ref_nll(lp, ids, 1 if span == "whole" else cont)
        assert res.n_tokens_pos[k] == n
        assert res.nll_pos[k] == pytest.approx(tot / n if norm == "mean" else tot, rel=1e-6)


def test_exact_tie_counts_half_under_mean_and_zero_under_sum():
    x = UNIFORM[1] - VOCAB.unit_offset  # a unit whose row is uniform: every step costs exactly log V
    items = [{"id": "tie", "positive": [speech([x, x, x])], "negative": [speech([x, x])]},
             {"id": "same", "positive": [speech([5, 9, 4])], "negative": [speech([5, 9, 4])]}]
    model = Bigram()
    mean = EvalSuite({"t": items}, FakeTokenizer(), VOCAB, norm="mean").run_detailed(model)["t"]
    assert mean.scores.tolist() == [0.5, 0.5]
    assert mean.nll_pos[0] == mean.nll_neg[0] == pytest.approx(np.log(V), rel=1e-6)
    summed = EvalSuite({"t": items}, FakeTokenizer(), VOCAB, norm="sum").run_detailed(model)["t"]
    assert summed.scores.tolist() == [0.0, 0.5]  # 3 log V > 2 log V; identical members tie
    assert summed.accuracy == 0.25


def test_pair_scores_rule():
    assert pair_scores(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 1.0])).tolist() == [1.0, 0.5, 0.0]


def test_continuation_scores_only_the_ending():
    # same ending, different prompts: whole-sequence scores differ, continuation ones are equal
    lp = Bigram().logprob()
    pos = encode_segments([speech([1, 2, 3]), text("the end")], FakeTokenizer(), VOCAB)
    neg = encode_segments([speech([7, 7]), text("the end")], FakeTokenizer(), VOCAB)
    # the ending begins with the <text> marker, whose prediction depends on the last unit: make them equal
    pos = Encoded(pos.ids[:3] + [7 + VOCAB.unit_offset] + pos.ids[4:], pos.cont_start)
    nll = sequence_nll(Bigram(), [pos, neg], batch_size=2)
    assert nll.cont_n[0] == nll.cont_n[1] == len(pos.ids) - pos.cont_start
    assert nll.cont_sum[0] == pytest.approx(ref_nll(lp, pos.ids, pos.cont_start)[0], rel=1e-6)
    assert nll.cont_sum[0] == pytest.approx(nll.cont_sum[1], rel=1e-12)
    assert nll.whole_sum[0] != pytest.approx(nll.whole_sum[1])


def test_batch_size_and_neighbours_do_not_change_a_pair_bigram():
    rng = np.random.default_rng(5)
    items = random_items(rng, 16)
    long = [{"id": f"long{i}", "positive": [speech(rng.integers(0, 500, 300))],
             "negative": [speech(rng.integers(0, 500, 280))]} for i in range(4)]
    model = Bigram()
    one = EvalSuite({"a": items}, FakeTokenizer(), VOCAB, batch_size=1).run_detailed(model)["a"]
    mixed = EvalSuite({"a": items, "b": long}, FakeTokenizer(), VOCAB, batch_size=16).run_detailed(model)["a"]
    assert one.scores.tolist() == mixed.scores.tolist()
    assert np.array_equal(one.nll_pos, mixed.nll_pos) and np.array_equal(one.nll_neg, mixed.nll_neg)


def test_batch_invariance_on_a_real_toy_transformer(prepared):
    from scaling.shapes import DEMO
    from scaling.datadir import DataDir
    from trainer.data.tokenizer import load_tokenizer
    from trainer.model import build_model

    torch.set_num_threads(1)
    tok = load_tokenizer(prepared / "tokenizer")
    vocab = SpeechVocab.of(tok)
    model = build_model(DEMO["toy-xs"].with_vocab(DataDir.open(prepared).manifest["speech_model_vocab"]), 0)
    model.train()  # dropout-free or not, scoring must switch to eval and back
    rng = np.random.default_rng(0)
    items = [{"id": f"p{i}", "positive": [speech(rng.integers(0, 500, rng.integers(3, 20))), text("the cat sat")],
              "negative": [speech(rng.integers(0, 500, rng.integers(3, 20))), text("a dog ran")]} for i in range(12)]
    long = [{"id": f"l{i}", "positive": [speech(rng.integers(0, 500, 200))],
             "negative": [speech(rng.integers(0, 500, 190))]} for i in range(6)]
    one = EvalSuite({"a": items}, tok, vocab, batch_size=1).run_detailed(model)["a"]
    mixed = EvalSuite({"a": items, "b": long}, tok, vocab, batch_size=16).run_detailed(model)["a"]
    assert model.training
    np.testing.assert_allclose(mixed.nll_pos, one.nll_pos, rtol=0, atol=1e-5)
    np.testing.assert_allclose(mixed.nll_neg, one.nll_neg, rtol=0, atol=1e-5)
    assert mixed.scores.tolist() == one.scores.tolist()
    # and against an unpadded, unbatched forward pass of each sequence
    seq = EvalSuite({"a": items}, tok, vocab).benchmarks["a"].pos[0].ids
    with torch.no_grad():
        logits = model.eval()(input_ids=torch.tensor([seq])).logits[0].double()
    ref = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(seq[1:])).item()
    assert one.nll_pos[0] == pytest.approx(ref, abs=1e-5)


def test_scoring_options_are_checked():
    with pytest.raises(ConfigError, match="norm"):
        score_pairs(Bigram(), [], norm="median")
    with pytest.raises(ConfigError, match="span"):
        EvalSuite({}, FakeTokenizer(), VOCAB, span="ending")


def test_unit_out_of_range_names_the_item():
    items = [{"id": "bad-7", "positive": [speech([1, 500])], "negative": [speech([1])]}]
    with pytest.raises(ConfigError, match=r"swuggy:bad-7.*unit 500"):
        EvalSuite({"swuggy": items}, FakeTokenizer(), VOCAB)


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    s = np.r_[np.ones(70), np.zeros(30)]
    lo, hi = bootstrap_ci(s, n_resamples=2000, seed=1)
    assert (lo, hi) == bootstrap_ci(s, n_resamples=2000, seed=1)
    assert lo < 0.7 < hi
    # binomial SE = sqrt(.7*.3/100) = 0.0458: a 95% interval ~ +-0.09
    assert 0.14 < hi - lo < 0.22
    assert bootstrap_ci(np.ones(10)) == (1.0, 1.0)


def test_dropped_label_is_neither_scored_nor_counted():
    """``Encoded.drop`` (SlamKit's pad-id rule): a label equal to it adds nothing to the sum or the count,
    whole and continuation; it still conditions what follows (it is an input)."""
    lp = Bigram(seed=2).logprob()
    u = VOCAB.unit_offset
    bang = 1  # a text id, as "!" is id 0 in Qwen's vocabulary
    ids = [VOCAB.text, bang, 3, bang, bang, VOCAB.speech, u + 4, u + 9, bang]
    seqs = [Encoded(ids, 5, drop=bang), Encoded(ids, 5), Encoded(ids[:3], 0, drop=bang)]
    nll = sequence_nll(Bigram(seed=2), seqs, batch_size=2)
    kept = [t for t in range(1, len(ids)) if ids[t] != bang]
    assert nll.whole_n.tolist() == [len(kept), len(ids) - 1, 1]
    assert nll.whole_sum[0] == pytest.approx(sum(-lp[ids[t - 1], ids[t]] for t in kept), rel=1e-6)
    assert nll.whole_sum[1] == pytest.approx(ref_nll(lp, ids)[0], rel=1e-6)  # same ids, no drop: scored apart
    assert nll.cont_n[0] == len([t for t in kept if t >= 5])
    assert nll.cont_sum[0] == pytest.approx(sum(-lp[ids[t - 1], ids[t]] for t in kept if t >= 5), rel=1e-6)
    assert nll.whole_sum[2] == pytest.approx(-lp[bang, 3], rel=1e-6)


def test_bf16_value_rounds_like_slamkit_calc_nll():
    """``dtype="bf16"``: the sum rounded to bfloat16, the mean = bf16 sum / count in bfloat16 (the count
    itself rounded to bfloat16 first, as torch divides a bf16 tensor by an int64 one)."""
    from trainer.eval.scoring import SequenceNLL

    tot, cnt = np.array([300.3, 2.0, 17.77]), np.array([257, 3, 0])
    s = SequenceNLL(tot, cnt, tot, cnt, bf16=True)
    t = torch.tensor(tot).to(torch.bfloat16)
    assert s.value("sum").tolist() == t.double().tolist()
    assert s.value("mean").tolist() == (t / torch.tensor([257, 3, 1])).double().tolist()
    assert s.value("mean")[0] == float(torch.tensor(300.0, dtype=torch.bfloat16) / 256)  # 300.3 -> 300, 257 -> 256
    assert SequenceNLL(tot, cnt, tot, cnt).value("mean")[1] == pytest.approx(2 / 3, rel=1e-15)
    with pytest.raises(ConfigError, match="unknown scoring dtype"):
        sequence_nll(Bigram(), [Encoded([1, 2], 0)], dtype="fp16")
