"""Packed scoring (trainer.eval.packing): prefix trees and shared rows give the plain path's scores."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scaling.datadir import DEFAULT_BENCHMARKS
from trainer.eval.packing import make_tree, pack_batches
from trainer.eval.scoring import Encoded, can_pack, sequence_nll


@pytest.fixture(scope="module")
def toy(prepared):
    from scaling.datadir import DataDir
    from scaling.shapes import DEMO
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.model import build_model

    torch.set_num_threads(1)
    tok = load_tokenizer(prepared / "tokenizer")
    model = build_model(DEMO["toy-xs"].with_vocab(DataDir.open(prepared).manifest["speech_model_vocab"]), 0).eval()
    return model, tok, SpeechVocab.of(tok)


def test_tree_shares_the_prefix_and_predicts_each_token_from_its_parent():
    t = make_tree((4, 7), [[1, 2, 3, 4], [1, 2, 9]])
    assert t.ids.tolist() == [1, 2, 3, 4, 9]
    assert t.pos.tolist() == [0, 1, 2, 3, 2]      # the second suffix continues from the prefix
    assert t.branch.tolist() == [0, 0, 1, 1, 2]
    assert t.parent.tolist() == [-1, 0, 1, 2, 1]  # 9 follows 2, not 4
    assert t.origin.tolist() == [0, 1, 2, 3, 2]
    # no common prefix: two documents; one member a prefix of the other: an empty branch
    assert make_tree((0, 1), [[5, 6], [7, 8]]).parent.tolist() == [-1, 0, -1, 2]
    assert make_tree((0, 1), [[5, 6], [5, 6, 7]]).ids.tolist() == [5, 6, 7]


def test_pack_batches_fills_rows_and_respects_the_token_budget():
    trees = [make_tree((i,), [list(range(n))]) for i, n in enumerate([10, 20, 30, 40, 200])]
    batches = pack_batches(trees, row_tokens=64, max_tokens=128, max_rows=99)
    assert sorted(i for b in batches for row in b for i in row) == list(range(5))  # every tree once
    for b in batches:
        width = max(64, *(len(trees[i]) for row in b for i in row))
        assert all(sum(len(trees[i]) for i in row) <= width for row in b)
        assert len(b) * width <= 128 or len(b) == 1  # a tree longer than the budget: a batch of its own
    assert batches == [[[0, 1, 2], [3]], [[4]]]  # 10 + 20 + 30 tokens share one 64-token row; 200 alone


def test_packed_scores_equal_plain_scores_on_the_benchmarks(toy, prepared):
    """Every default benchmark's pairs (sSC: a whole spoken story as the shared prefix), packed and
    prefix-shared vs one plain padded row per sequence: NLLs to float rounding, identical accuracies."""
    from trainer.eval.scoring import pair_scores
    from trainer.eval.suite import EvalSuite

    model, tok, vocab = toy
    assert can_pack(model)
    suite = EvalSuite.from_data(prepared, list(DEFAULT_BENCHMARKS), tok, vocab)
    shared = 0
    for name, b in suite.benchmarks.items():
        n = len(b.ids)
        seqs, groups = b.pos + b.neg, [(i, n + i) for i in range(n)]
        shared += sum(len(make_tree((0, 1), [p.ids, q.ids]).ids) < len(p.ids) + len(q.ids) for p, q in zip(b.pos, b.neg))
        for span in ("whole", "continuation"):
            plain = sequence_nll(model, seqs, groups=groups, packed=False)
            packed = sequence_nll(model, seqs, groups=groups, packed=True)
            assert np.array_equal(plain.count(span), packed.count(span)), name
            a, p = plain.value("mean", span), packed.value("mean", span)
            np.testing.assert_allclose(p, a, rtol=0, atol=1e-5, err_msg=name)
            assert pair_scores(p[:n], p[n:]).tolist() == pair_scores(a[:n], a[n:]).tolist(), name
            np.testing.assert_allclose(packed.value("sum", span), plain.value("sum", span), rtol=1e-6, err_msg=name)
    assert shared > 0  # prefix trees were really exercised


def test_packed_handles_repeats_prefixes_and_one_token_sequences(toy):
    model, _, _ = toy
    rng = np.random.default_rng(1)
    base = rng.integers(10, 300, 200).tolist()  # long enough for a prefix tree (>= ROW_TOKENS shared)
    seqs = [Encoded(base, 5), Encoded(base[:150], 5), Encoded(base, 5), Encoded(base[:1], 0),
            Encoded(rng.integers(10, 300, 12).tolist(), 3), Encoded(base[:120] + [201, 202], 120)]
    groups = [(0, 1), (2, 3), (4, 5), (5, 0)]  # a sequence in two groups, a repeated one, a 1-token one
    plain = sequence_nll(model, seqs, groups=groups, packed=False)
    packed = sequence_nll(model, seqs, groups=groups, packed=True)
    for span in ("whole", "continuation"):
        assert packed.count(span).tolist() == plain.count(span).tolist()
        np.testing.assert_allclose(packed.value("sum", span), plain.value("sum", span), rtol=1e-6, atol=1e-6)
    assert packed.whole_sum[0] == packed.whole_sum[2]  # identical sequences: an exact tie
    assert packed.whole_n[3] == 0
