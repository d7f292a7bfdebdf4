"""`scaling memory`, and TWIST init from a text LM folder on disk (Qwen2 and Llama)."""
import json

import pytest

from scaling.cli import main
from scaling.memory import estimate, speech_shape
from scaling.shapes import SPEECH_TOKENS, padded_vocab, shape_from_hf_config


def test_7b_on_8_h100s_fits_and_states_assumptions(capsys, tmp_path):
    rc = main(["memory", "--model", "qwen2.5-7b", "--gpus", "8", "--micro-batch", "1", "--seq", "8192",
               "--json", str(tmp_path / "m.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "fits" in out and "assumes FSDP2 full shard" in out
    plan = json.loads((tmp_path / "m.json").read_text())
    assert plan["fits"] and plan["total_gib"] < 80
    assert plan["params"] == pytest.approx(7.62e9, rel=0.01)
    # 16 bytes of sharded state per parameter over 8 GPUs
    sharded = sum(v for k, v in plan["parts"].items() if "sharded" in k)
    assert sharded == pytest.approx(16 * plan["params"] / 8 / 2**30)


def test_memory_scales_and_refuses_what_does_not_fit(capsys):
    s = speech_shape("qwen2.5-7b")
    one = estimate(s, model="x", gpus=1, micro_batch=1, seq=8192, activation_checkpointing=False)
    eight = estimate(s, model="x", gpus=8, micro_batch=1, seq=8192, activation_checkpointing=False)
    assert one.parts["AdamW moments (sharded)"] == pytest.approx(8 * eight.parts["AdamW moments (sharded)"])
    assert not one.fits
    chunked = estimate(s, model="x", gpus=8, micro_batch=1, seq=8192, chunked_ce=True)
    assert chunked.parts["logits + CE"] < eight.parts["logits + CE"] / 4
    assert main(["memory", "--model", "qwen2.5-7b", "--gpus", "1", "--seq", "8192", "--no-activation-checkpointing"]) == 1
    assert main(["memory", "--model", "gpt-9", "--gpus", "8"]) == 2
    assert "gpt-9" in capsys.readouterr().err


def test_speech_rows_padded():
    s = speech_shape("qwen2.5-0.5b")
    assert s.vocab_size == padded_vocab(151665 + SPEECH_TOKENS) and s.vocab_size % 64 == 0


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_text_lm_folder_becomes_a_speech_lm(prepared, tmp_path, family):
    import dataclasses

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scaling.rundir import RunDir
    from scaling.shapes import DEMO
    from scaling.datadir import DataDir
    from trainer.data.tokenizer import load_tokenizer
    from trainer.execute import execute
    from trainer.model import build_model
    from helpers import toy_spec as _spec

    m = DataDir.open(prepared).manifest
    text_shape = dataclasses.replace(DEMO["toy-xs"], family=family, qkv_bias=family == "qwen2",
                                     vocab_size=m["text_model_vocab"])
    lm = build_model(text_shape, seed=1)
    lm.save_pretrained(tmp_path / "text_lm")
    load_tokenizer(prepared / "tokenizer_text").save_pretrained(tmp_path / "text_lm")

    shape = shape_from_hf_config(json.loads((tmp_path / "text_lm" / "config.json").read_text()))
    assert shape == text_shape
    spec = dataclasses.replace(_spec(prepared, arm="interleaved", tokens=512, init=str(tmp_path / "text_lm")),
                               shape=shape.with_vocab(m["speech_model_vocab"]))
    run = RunDir(tmp_path / "runs" / spec.run_id).create(spec)
    rec = execute(run)
    model = AutoModelForCausalLM.from_pretrained(run.model_path)
    tok = AutoTokenizer.from_pretrained(run.model_path)
    assert model.config.model_type == family
    assert model.get_input_embeddings().weight.shape[0] == m["speech_model_vocab"] >= len(tok)
    assert "<Un499>" in tok.get_vocab() and rec["params"] == sum(p.numel() for p in model.parameters())
