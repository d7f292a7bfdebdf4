"""`--convention slamkit` scores exactly what SlamKit scores (issue 29): its pad-id label drop (id 0, "!" in
Qwen2.5's and Llama-3's vocabularies), the unit tokeniser's BOS/EOS (n + 1 scored), the dedup across a
speech -> speech join, and `--dtype bf16`.

The reference below is written from reading SlamKit (slp-rl/slamkit: ``InterleavingTokeniser``,
``UnitTokeniser``, ``CrossModalMetricDataset``, ``UnitLM.log_likelihood``, ``calc_nll``), not from our code:
an item becomes the string SlamKit's tokeniser builds, the string is tokenised by the tokenizer itself, and
the NLL is SlamKit's: a right-padded batch (pad 0) through the model without an attention mask, every
label equal to the pad id set to -100, the per-token cross-entropy masked, summed, divided by the count.
"""
from __future__ import annotations

import json
import sys
import types
from itertools import groupby

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import SLAMKIT_EXAMPLE
from scaling.errors import ConfigError

PAD = 0  # SlamKit's pad_token_id
TEXTS = ["Stop! Look at the cat on the mat!", "Run home now!", "He said no!! Not again.", "a dog sat", "the sky is blue",
         "Wow! what a day", "she ran home and sat down", "no!", "Oh! the end."]


# -- tokenizers shaped like Qwen's (no BOS), Llama's (BOS) and SlamKit's UnitTokeniser ---------------------
def _text_bpe():
    """A tiny byte-level BPE whose first token is "!" (as in Qwen2.5 and Llama-3)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXTS * 3, trainer=trainers.BpeTrainer(
        vocab_size=300, special_tokens=[], show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def qwen_like():
    from transformers import PreTrainedTokenizerFast

    from trainer.data.tokenizer import add_speech_tokens

    tok = PreTrainedTokenizerFast(tokenizer_object=_text_bpe())
    tok.add_special_tokens({"eos_token": "<|endoftext|>"})
    add_speech_tokens(tok, 500)
    return tok


def llama_like():
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    from trainer.data.tokenizer import add_speech_tokens

    tok = PreTrainedTokenizerFast(tokenizer_object=_text_bpe())
    tok.add_special_tokens({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"})
    tok._tokenizer.post_processor = TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", tok.bos_token_id)])
    add_speech_tokens(tok, 500)
    return tok


def unit_like():
    """SlamKit's UnitTokeniser vocabulary as read from its source: <PAD> 0, <S> 1 (BOS and EOS), <UnK> at
    K + 2, every string framed as "<S> ... <S>"; plus our two modality markers (unused by it)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Split
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    vocab = {"<PAD>": 0, "<S>": 1, **{f"<Un{i}>": i + 2 for i in range(500)}, "<speech>": 502, "<text>": 503,
             "<UNK>": 504}
    t = Tokenizer(WordLevel(vocab, unk_token="<UNK>"))
    t.pre_tokenizer = Split(pattern=">", behavior="merged_with_previous")
    t.post_processor = TemplateProcessing(single="<S> $0 <S>", special_tokens=[("<S>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<S>", eos_token="<S>", pad_token="<PAD>",
                                   unk_token="<UNK>")


TOKENIZERS = {"qwen": qwen_like, "llama": llama_like}


def tiny_model(vocab_size: int, seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, attn_implementation="sdpa")
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # logits spread enough that pairs differ
        model.model.embed_tokens.weight.normal_(0, 0.5)
    return model


# -- the reference: SlamKit's encoding and scoring, from reading its source --------------------------------
def dedup(units):
    """SlamKit's tokenisers collapse repeated units of the audio they extract (``dedup: true``)."""
    return [k for k, _ in groupby(units)]


def ref_string(item: dict, member: str, kind: str) -> str:
    """The string SlamKit tokenises for one pair member."""
    segs = item[member]
    unit_str = lambda units: "".join(f"<Un{u}>" for u in dedup(units))
    allunits = [u for s in segs if s["modality"] == "speech" for u in s["units"]]
    if kind == "unit" or not item.get("cross_modal"):
        # a speech benchmark: one audio file -> its units (stringify_representation, mode 'test')
        assert all(s["modality"] == "speech" for s in segs)
        return unit_str(allunits)
    # CrossModalMetricDataset: a speech prompt and a speech ending are one joined audio input;
    # otherwise (prompt, ending) as two inputs; then _stringify_interleaved
    inputs = [("speech", allunits)] if all(s["modality"] == "speech" for s in segs) else \
        [(s["modality"], s["units"] if s["modality"] == "speech" else s["text"]) for s in segs]
    out, prev = "", None
    for mod, content in inputs:
        if mod == "speech":
            out += ("<speech>" if prev != "s" else "") + unit_str(content)
            prev = "s"
        else:
            out += ("<text>" if prev != "t" else "") + content
            prev = "t"
    return out


def ref_ids(tok, item, member, kind):
    return tok(ref_string(item, member, kind), add_special_tokens=True)["input_ids"]


@torch.no_grad()
def ref_nll(model, seqs: list[list[int]], batch_size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """SlamKit's mean NLL and scored-token count per sequence (UnitLM.log_likelihood + calc_nll): the
    batch right-padded with the pad id, no attention mask, labels equal to the pad id dropped; the
    arithmetic in the model's dtype (bf16 for a bf16 model)."""
    vals, counts = [], []
    for s in range(0, len(seqs), batch_size):
        chunk = seqs[s:s + batch_size]
        tokens = torch.full((len(chunk), max(map(len, chunk))), PAD, dtype=torch.long)
        for r, ids in enumerate(chunk):
            tokens[r, :len(ids)] = torch.tensor(ids)
        logits = model(input_ids=tokens).logits
        labels = tokens[:, 1:].clone()
        labels[labels == PAD] = -100
        mask = labels.ne(-100)
        lg = logits[:, :-1]
        losses = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), labels.reshape(-1), reduction="none").view(labels.shape)
        total = (losses * mask).sum(dim=-1)
        vals += (total / mask.sum(dim=-1)).double().tolist()
        counts += mask.sum(dim=-1).tolist()
    return np.array(vals), np.array(counts)


# -- fixture items (the real example units; texts with "!") ------------------------------------------------
@pytest.fixture(scope="module")
def units():
    rows = [json.loads(line) for line in (SLAMKIT_EXAMPLE / "features.jsonl").read_text().splitlines()]
    return [dedup(r["units"]) for r in rows]


def sp(u):
    return {"modality": "speech", "units": [int(x) for x in u]}


def tx(t):
    return {"modality": "text", "text": t}


def speech_items(units) -> list[dict]:
    """Pure-speech items (sWUGGY / whole-story shaped) and speech -> speech joins whose ending starts
    with the prompt's last unit."""
    a, b = units
    items = [{"id": f"w{k}", "positive": [sp(a[20 * k:20 * k + 6 + k])], "negative": [sp(b[20 * k:20 * k + 5 + 2 * k])]}
             for k in range(5)]
    for k in range(4):
        prompt = a[100 + 30 * k:130 + 30 * k]
        last = prompt[-1]
        pos = dedup([last] + [u for u in b[40 * k:40 * k + 9]])  # starts with the prompt's last unit
        neg = dedup([last] + [u for u in b[40 * k + 12:40 * k + 20]])
        if k == 3:  # one ending that does not start with it
            neg = [u for u in neg[1:]] if neg[1] != last else neg[2:]
        items.append({"id": f"ss{k}", "cross_modal": True, "positive": [sp(prompt), sp(pos)],
                      "negative": [sp(prompt), sp(neg)]})
        # the same join in a speech benchmark (one audio per member in SlamKit: deduplicated as a whole)
        items.append({"id": f"j{k}", "positive": [sp(prompt), sp(pos)], "negative": [sp(prompt), sp(neg)]})
    return items


def mixed_items(units) -> list[dict]:
    """Cross-modal items with "!" in their text (T->T, S->T, T->S), and the speech items."""
    a, b = units
    items = []
    for k in range(4):
        p, e1, e2 = TEXTS[k], TEXTS[(k + 4) % len(TEXTS)], TEXTS[(k + 7) % len(TEXTS)]
        items.append({"id": f"tt{k}", "cross_modal": True, "positive": [tx(p), tx(e1)], "negative": [tx(p), tx(e2)]})
        items.append({"id": f"st{k}", "cross_modal": True, "positive": [sp(a[10 * k:10 * k + 15]), tx(e1)],
                      "negative": [sp(a[10 * k:10 * k + 15]), tx(e2)]})
        items.append({"id": f"ts{k}", "cross_modal": True, "positive": [tx(p), sp(b[10 * k:10 * k + 12])],
                      "negative": [tx(p), sp(b[5 + 10 * k:10 * k + 20])]})
    return items + speech_items(units)


def _suite(items, tok, **kw):
    from trainer.data.tokenizer import SpeechVocab
    from trainer.eval.suite import EvalSuite

    return EvalSuite({"x": items}, tok, SpeechVocab.of(tok), convention="slamkit", batch_size=5, **kw)


# -- the tests -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["qwen", "llama"])
def test_interleaved_counts_and_nll_equal_slamkit(name, units):
    """Items with "!" are scored on SlamKit's tokens (the pad-id label drop), speech -> speech joins
    deduplicated across the join; every count equal, every mean NLL within 1e-6 (relative)."""
    from trainer.eval.scoring import sequence_nll

    torch.set_num_threads(1)
    tok = TOKENIZERS[name]()
    assert tok.convert_ids_to_tokens(0) == "!"  # as in Qwen2.5 and Llama-3
    items = mixed_items(units)
    model = tiny_model(len(tok))
    suite = _suite(items, tok)
    res = suite.run_detailed(model, n_resamples=0)["x"]
    n_bang = 0
    for member, nll, cnt in (("positive", res.nll_pos, res.n_tokens_pos), ("negative", res.nll_neg, res.n_tokens_neg)):
        seqs = [ref_ids(tok, it, member, "interleaved") for it in items]
        want, want_n = ref_nll(model, seqs)
        n_bang += sum(s[1:].count(0) for s in seqs)
        assert cnt.tolist() == want_n.tolist()
        np.testing.assert_allclose(nll, want, rtol=1e-6, atol=0)
        got_ids = [e.ids for e in (suite.benchmarks["x"].pos if member == "positive" else suite.benchmarks["x"].neg)]
        assert got_ids == seqs
    assert n_bang >= 10  # the fixture holds "!" labels to drop
    assert res.scores.tolist() == np.where(res.nll_pos < res.nll_neg, 1.0, np.where(res.nll_pos == res.nll_neg, 0.5, 0.0)).tolist()
    # the packed and the plain path agree (the label drop in both)
    b = suite.benchmarks["x"]
    seqs = b.pos + b.neg
    groups = [(i, i + len(b.pos)) for i in range(len(b.pos))]
    plain = sequence_nll(model, seqs, groups=groups, packed=False)
    packed = sequence_nll(model, seqs, groups=groups, packed=True)
    assert plain.whole_n.tolist() == packed.whole_n.tolist()
    np.testing.assert_allclose(plain.value(), packed.value(), rtol=1e-6, atol=0)
    assert suite.settings["label_drop_id"] == 0 and suite.settings["label_drop_token"] == "!"
    assert suite.settings["slamkit_tokeniser"] == "interleaved" and res.summary()["label_drop_id"] == 0


def test_unit_tokeniser_scores_bos_units_eos(units):
    """A pure-speech SlamKit model (UnitTokeniser): BOS + units + EOS, n + 1 tokens scored."""
    from trainer.data.tokenizer import SpeechVocab
    from trainer.eval.scoring import SlamkitRules, slamkit_rules

    torch.set_num_threads(1)
    tok = unit_like()
    rules = slamkit_rules(tok, tokeniser="unit")
    assert rules == SlamkitRules("unit", 0, 1, "option")
    items = speech_items(units)
    model = tiny_model(len(tok), seed=1)
    suite = _suite(items, tok, slamkit=rules)
    res = suite.run_detailed(model, n_resamples=0)["x"]
    vocab = SpeechVocab.of(tok)
    for member, nll, cnt in (("positive", res.nll_pos, res.n_tokens_pos), ("negative", res.nll_neg, res.n_tokens_neg)):
        seqs = [ref_ids(tok, it, member, "unit") for it in items]
        assert all(s[0] == s[-1] == 1 for s in seqs)
        want, want_n = ref_nll(model, seqs)
        assert cnt.tolist() == want_n.tolist() == [len(s) - 1 for s in seqs]
        n_units = [len(dedup([u for s in it[member] for u in s["units"]])) for it in items]
        assert cnt.tolist() == [n + 1 for n in n_units]
        np.testing.assert_allclose(nll, want, rtol=1e-6, atol=0)
    assert suite.benchmarks["x"].pos[0].ids == [1] + vocab.units_to_ids(items[0]["positive"][0]["units"]) + [1]
    assert suite.settings["slamkit_tokeniser"] == "unit" and suite.settings["bos_eos_id"] == 1
    with pytest.raises(ConfigError, match="unit tokeniser .* reads speech only"):
        _suite([{"id": "t", "cross_modal": True, "positive": [tx("hi")], "negative": [tx("ho")]}], tok, slamkit=rules)


def test_speech_to_speech_join_collapses_the_repeated_unit():
    """SlamKit extracts the joined audio's units: an ending that starts with the prompt's last unit has
    that unit once; our own convention keeps both lists as given."""
    from trainer.data.tokenizer import SpeechVocab
    from trainer.eval.scoring import encode_segments, encode_slamkit

    tok = qwen_like()
    vocab = SpeechVocab.of(tok)
    u = vocab.unit_offset
    segs = [sp([5, 9, 7]), sp([7, 3])]
    assert encode_slamkit(segs, tok, vocab, cross_modal=True).ids == [vocab.speech, u + 5, u + 9, u + 7, u + 3]
    assert encode_slamkit(segs, tok, vocab).ids == [u + 5, u + 9, u + 7, u + 3]
    assert encode_segments(segs, tok, vocab).ids == [vocab.speech, u + 5, u + 9, u + 7, u + 7, u + 3]
    item = {"id": "1", "cross_modal": True, "positive": segs, "negative": segs}
    assert encode_slamkit(segs, tok, vocab, cross_modal=True).ids == ref_ids(tok, item, "positive", "interleaved")


def test_tokeniser_kind_defaults_from_the_checkpoint(monkeypatch, tmp_path):
    """The tokeniser kind, pad id and BOS/EOS follow trainer.slamkit_ckpt.slamkit_conventions(folder) when
    that exists; without it (or for another folder) the interleaved tokeniser and pad id 0."""
    from trainer.eval.scoring import SlamkitRules, slamkit_rules

    tok = unit_like()
    mod = types.ModuleType("trainer.slamkit_ckpt")
    mod.slamkit_conventions = lambda folder: ({"tokeniser_type": "unit", "pad_token_id": 0, "bos_eos_token_id": 1}
                                              if str(folder).endswith("sims") else None)
    monkeypatch.setitem(sys.modules, "trainer.slamkit_ckpt", mod)
    assert slamkit_rules(tok, checkpoint=tmp_path / "sims") == SlamkitRules("unit", 0, 1, "checkpoint")
    assert slamkit_rules(tok, checkpoint=tmp_path / "ours") == SlamkitRules("interleaved", 0, None, "default")
    assert slamkit_rules(tok, tokeniser="interleaved", checkpoint=tmp_path / "sims").tokeniser == "interleaved"
    assert slamkit_rules(tok, conventions={"tokeniser": "interleave", "pad_token_id": None}) == \
        SlamkitRules("interleaved", None, None, "checkpoint")
    monkeypatch.setitem(sys.modules, "trainer.slamkit_ckpt", None)  # the module absent: import fails
    assert slamkit_rules(tok, checkpoint=tmp_path / "sims") == SlamkitRules()
    with pytest.raises(ConfigError, match="no bos_token"):
        slamkit_rules(qwen_like(), tokeniser="unit")


def _cross_modal_folder(root, units):
    """A SlamKit cross-modal StoryCloze folder (<i>_mutual/_correct/_incorrect .wav + .txt) and its units."""
    a, b = units
    root.mkdir(parents=True)
    rows = []
    for i in range(3):
        parts = {"mutual": (a[30 * i:30 * i + 20], TEXTS[i]), "correct": (None, TEXTS[i + 3]),
                 "incorrect": (b[30 * i:30 * i + 9], TEXTS[i + 5])}
        prompt_last = parts["mutual"][0][-1]
        parts["correct"] = (dedup([prompt_last] + b[30 * i + 10:30 * i + 18]), TEXTS[i + 3])
        for part, (u, t) in parts.items():
            (root / f"{i}_{part}.wav").write_bytes(b"")
            (root / f"{i}_{part}.txt").write_text(t + "\n")
            rows.append(json.dumps({"file_name": f"{i}_{part}.wav", "units": [int(x) for x in u]}))
    (root / "units.jsonl").write_text("\n".join(rows) + "\n")


def test_cli_records_the_rules_and_bf16_scores_like_slamkit(units, tmp_path):
    """`scaling eval --convention slamkit --dtype bf16`: runs (CPU here), records dtype and SlamKit's
    label drop in the JSON, and gives SlamKit's bf16 numbers (bf16 logits, losses, sum and mean)."""
    from scaling.cli import main
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.eval.benchmarks import load_pairs
    from trainer.model import load_model

    torch.set_num_threads(1)
    tok = qwen_like()
    ckpt = tmp_path / "ckpt"
    tiny_model(len(tok), seed=2).save_pretrained(str(ckpt))
    tok.save_pretrained(str(ckpt))
    _cross_modal_folder(tmp_path / "data" / "cm", units)
    names = ["cm_s2s", "cm_t2t", "cm_s2t"]  # named: a bare "cm" is text -> text under --convention slamkit
    out = {}
    for dtype in ("fp32", "bf16"):
        js, per_item = tmp_path / f"{dtype}.json", tmp_path / f"items_{dtype}"
        assert main(["eval", str(ckpt), "--data", str(tmp_path / "data"), "--benchmarks", ",".join(names),
                     "--convention", "slamkit", "--dtype", dtype, "--resamples", "0", "--json", str(js),
                     "--per-item", str(per_item)]) == 0
        out[dtype] = json.loads(js.read_text())
        res = out[dtype]
        assert res["dtype"] == dtype and res["convention"] == "slamkit"
        assert res["label_drop_id"] == 0 and res["label_drop_token"] == "!"
        assert res["slamkit_tokeniser"] == "interleaved" and res["slamkit_tokeniser_from"] == "default"
        assert all(m["dtype"] == dtype and m["label_drop_id"] == 0 for m in res["metrics"].values())
        model = load_model(ckpt).to(torch.bfloat16 if dtype == "bf16" else torch.float32)
        tk = load_tokenizer(ckpt)
        for name in names:
            items = load_pairs(tmp_path / "data", name, n_units=SpeechVocab.of(tk).n_units)
            rows = (per_item / f"{name}.csv").read_text().splitlines()[1:]
            got = np.array([[float(x) for x in r.split(",")[1:5]] for r in rows])
            for col, member in ((0, "positive"), (1, "negative")):
                want, want_n = ref_nll(model, [ref_ids(tk, it, member, "interleaved") for it in items])
                assert got[:, col + 2].tolist() == want_n.tolist()
                if dtype == "fp32":
                    np.testing.assert_allclose(got[:, col], want, rtol=1e-6, atol=0)
                else:  # bf16 values, within a bf16 step of SlamKit's (its batch shapes differ from ours)
                    assert all(float(torch.tensor(v).to(torch.bfloat16)) == v for v in got[:, col])
                    np.testing.assert_allclose(got[:, col], want, rtol=2 ** -7, atol=0)
    assert out["fp32"]["metrics"].keys() == out["bf16"]["metrics"].keys()
    with pytest.raises(SystemExit):  # --slamkit-tokeniser takes unit or interleaved
        main(["eval", str(ckpt), "--data", str(tmp_path / "data"), "--slamkit-tokeniser", "units"])
    assert main(["eval", str(ckpt), "--data", str(tmp_path / "data"), "--benchmarks", "cm",
                 "--slamkit-tokeniser", "unit"]) == 2  # without --convention slamkit: a clear error


def test_bf16_equals_slamkit_bf16_sequence_by_sequence(units):
    """One sequence per forward (SlamKit's batch of one): our bf16 scores equal SlamKit's bf16 arithmetic."""
    torch.set_num_threads(1)
    tok = qwen_like()
    items = mixed_items(units)[:12]
    model = tiny_model(len(tok), seed=3).to(torch.bfloat16)
    res = _suite(items, tok, dtype="bf16").run_detailed(model, n_resamples=0)["x"]
    seqs = [ref_ids(tok, it, "positive", "interleaved") for it in items]
    want, want_n = ref_nll(model, seqs, batch_size=1)
    assert res.n_tokens_pos.tolist() == want_n.tolist()
    np.testing.assert_allclose(res.nll_pos, want, rtol=2 ** -7, atol=0)
    assert np.mean(res.nll_pos == want) >= 0.75  # mostly bit-equal (CPU bf16 GEMMs may round a row differently)
    with pytest.raises(ConfigError, match="dtype bf16 scores a torch.bfloat16 model"):
        _suite(items, tok, dtype="bf16").run_detailed(tiny_model(len(tok)), n_resamples=0)
