"""The training loop: exact budgets, TWIST init, checkpoints that load with Auto* alone."""

import pytest
import torch

from scaling.flops import count_params
from scaling.rundir import RunDir
from scaling.shapes import DEMO
from scaling.spec import RunSpec, TrainConfig
from scaling.datadir import DataDir
from helpers.runs import toy_spec as _spec, train_spec as _train
from trainer.model import build_model, extend_vocab
from trainer.schedule import cosine_with_min_lr, warmup_steps


def test_run_stops_at_exact_budget(prepared, tmp_path):
    spec = _spec(prepared, tokens=1000)  # 3 full steps of 256 + a trimmed step of 232 tokens
    run, rec = _train(tmp_path, spec)
    assert rec["tokens"] == 1000 and rec["steps"] == 4
    steps = [r for r in run.metrics() if "loss" in r]
    assert steps[-1]["tokens"] == 1000
    assert rec["flops"] == 6 * count_params(spec.shape).total * 1000
    assert run.status == "done"


def test_checkpoint_reloads_with_auto_classes(prepared, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = _spec(prepared, tokens=512)
    run, rec = _train(tmp_path, spec)
    model = AutoModelForCausalLM.from_pretrained(run.model_path)
    tok = AutoTokenizer.from_pretrained(run.model_path)
    assert "<Un0>" in tok.get_vocab() and "<speech>" in tok.get_vocab() and "<text>" in tok.get_vocab()
    assert len(tok) == DataDir.open(prepared).manifest["speech_vocab_size"]
    assert sum(p.numel() for p in model.parameters()) == rec["params"]
    # the reloaded model reproduces the recorded validation loss
    from trainer.validate import val_loss, val_windows

    w = val_windows(DataDir.open(prepared).tokens("speech", "val"), 64, 4)
    eos = tok.eos_token_id  # validation isolates documents as training does
    assert val_loss(model, w, eos=eos) == pytest.approx(rec["val_loss_speech"], rel=1e-5)


def test_text_lm_init_extends_vocabulary(prepared, tmp_path):
    lm_run, lm = _train(tmp_path, _spec(prepared, arm="textlm", tokens=512))
    spec = _spec(prepared, arm="interleaved", tokens=512, init=f"run:{lm_run.run_id}")
    run, rec = _train(tmp_path, spec)
    assert rec["params"] == count_params(spec.shape).total
    tok_shares = rec["tokens_per_stream"]
    assert set(tok_shares) == {"text", "interleaved", "speech"}
    assert max(tok_shares.values()) - min(tok_shares.values()) <= 64  # equal within one sequence
    # the record says how often the run repeats each stream: tokens drawn over the stream's whole windows
    dd = DataDir.open(prepared)
    for name, drawn in tok_shares.items():
        whole = len(dd.tokens(name, "train")) // spec.train.seq_len * spec.train.seq_len
        assert rec["epochs_per_stream"][name] == pytest.approx(drawn / whole, abs=1e-4)
    assert rec["epochs"] == max(rec["epochs_per_stream"].values())


def test_interleaved_run_refuses_unfinished_init(prepared, tmp_path):
    from scaling.errors import ConfigError

    lm_spec = _spec(prepared, arm="textlm", tokens=512)
    RunDir(tmp_path / "runs" / lm_spec.run_id).create(lm_spec)  # pending, never trained
    spec = _spec(prepared, arm="interleaved", tokens=512, init=f"run:{lm_spec.run_id}")
    with pytest.raises(ConfigError):
        _train(tmp_path, spec)
    assert RunDir(tmp_path / "runs" / spec.run_id).status == "failed"


def test_extend_vocab_mean_init():
    model = build_model(DEMO["toy-xs"].with_vocab(128), seed=0)
    old = model.get_input_embeddings().weight[:100].detach().clone()
    extend_vocab(model, 192, real_rows=100)
    w = model.get_input_embeddings().weight
    assert w.shape[0] == 192 and model.config.vocab_size == 192
    assert torch.equal(w[:100], old)
    assert torch.allclose(w[100:], old.mean(0, keepdim=True).expand(92, -1))
    assert model.get_output_embeddings().weight.data_ptr() == w.data_ptr()  # still tied


def test_cosine_schedule_shape():
    total = 100
    warm = warmup_steps(total, 0.05)
    lrs = [cosine_with_min_lr(s, total, 1e-3, 1e-4, warm) for s in range(total)]
    assert warm == 5 and lrs[warm - 1] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1:]))


def test_budget_smaller_than_one_step_rejected(prepared):
    from scaling.errors import ConfigError

    with pytest.raises(ConfigError, match="smaller than one optimiser step"):
        _spec(prepared, tokens=100).validate()


def test_same_seed_same_losses(prepared, tmp_path):
    spec = _spec(prepared, tokens=512, seed=5)
    _, a = _train(tmp_path / "a", spec)
    _, b = _train(tmp_path / "b", spec)
    assert a["val_loss_speech"] == b["val_loss_speech"] and a["final_train_loss"] == b["final_train_loss"]


def test_chunked_ce_and_checkpointing_run_matches_plain_run(prepared, tmp_path):
    """One process: chunked CE + activation checkpointing (no KV cache, checkpoint_wrapper) give the
    plain run's losses, and the export is a plain HF folder (wrapper names gathered away)."""
    import dataclasses

    from transformers import AutoModelForCausalLM

    spec = _spec(prepared, tokens=1024)
    _, plain = _train(tmp_path / "plain", spec)
    chunked = dataclasses.replace(spec, train=dataclasses.replace(spec.train, chunked_ce=True, activation_checkpointing=True))
    run, rec = _train(tmp_path / "chunked", chunked)
    assert rec["effective"]["chunked_ce"] and rec["effective"]["activation_checkpointing"] and rec["effective"]["world_size"] == 1
    assert rec["final_train_loss"] == pytest.approx(plain["final_train_loss"], rel=1e-4)
    assert rec["val_loss_speech"] == pytest.approx(plain["val_loss_speech"], rel=1e-4)
    model = AutoModelForCausalLM.from_pretrained(run.model_path)
    assert sum(p.numel() for p in model.parameters()) == rec["params"]
    from trainer.data.tokenizer import load_tokenizer
    from trainer.validate import val_loss, val_windows

    w = val_windows(DataDir.open(prepared).tokens("speech", "val"), 64, 4)
    eos = load_tokenizer(run.model_path).eos_token_id
    assert val_loss(model, w, eos=eos) == pytest.approx(rec["val_loss_speech"], rel=1e-5)  # the trained weights, all of them
