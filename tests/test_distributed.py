"""FSDP2 on CPU: two sharded processes (gloo) reproduce the single-process run, with every
option of the scale path in force (trainer.parallel.parallelize, the one loss path)."""
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scaling.rundir import RunDir
from helpers.runs import toy_spec as _spec, train_spec as _train


@pytest.mark.slow
def test_two_process_fsdp_matches_single_process(prepared, tmp_path):
    """Activation checkpointing + chunked LM-head CE + micro-batches under FSDP (2 gloo processes)
    reproduce one plain process's per-step losses, and result.json says they were in force."""
    spec = _spec(prepared, arm="interleaved", tokens=320 * 4 + 64)  # last step: one row, rank 1 idles
    plain = dataclasses.replace(spec.train, batch_size=5, checkpoint_every=2, keep_checkpoints=True)
    spec = dataclasses.replace(spec, init="random", train=plain)
    single_run, single = _train(tmp_path / "single", spec)
    assert single["effective"] == {"world_size": 1, "activation_checkpointing": False, "compile": False, "compiled_layers": 0,
                                   "chunked_ce": False, "attention": "sdpa", "precision": "amp-bf16", "micro_batch_size": 5,
                                   "accumulation": 1, "fsdp": False, "liger_ce": False, "compiled_ce": False,
                                   "bf16_params": False, "master_dtype": "float32", "fullgraph": False,
                                   "optimizer": "adamw (foreach)", "liger_kernels": False}

    spec = dataclasses.replace(spec, train=dataclasses.replace(plain, activation_checkpointing=True, chunked_ce=True, micro_batch_size=1))
    run = RunDir(tmp_path / "fsdp" / "runs" / spec.run_id).create(spec)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                           "-m", "scaling.cli", "train", str(run.path)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rec = run.result()
    assert rec["effective"] == {"world_size": 2, "activation_checkpointing": True, "compile": False, "compiled_layers": 0,
                                "chunked_ce": True, "attention": "sdpa", "precision": "amp-bf16", "micro_batch_size": 1,
                                "accumulation": 3, "fsdp": True, "liger_ce": False, "compiled_ce": False,
                                "bf16_params": False, "master_dtype": "float32", "fullgraph": False,
                                "optimizer": "adamw (foreach)", "liger_kernels": False}
    assert rec["tokens"] == single["tokens"]
    losses = lambda r: [x["loss"] for x in r.metrics() if "loss" in x and "branch" not in x]
    assert losses(run) == pytest.approx(losses(single_run), rel=1e-4)
    assert rec["val_loss_speech"] == pytest.approx(single["val_loss_speech"], rel=1e-4)
    # the export is a plain HF folder, and the sharded checkpoints hold full state dicts
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run.model_path)
    assert sum(p.numel() for p in model.parameters()) == rec["params"]
    assert (run.path / "checkpoints").is_dir()


@pytest.mark.slow
def test_sharded_checkpoint_resumes_in_one_process(prepared, tmp_path):
    """A two-process run's sharded (DCP) checkpoint resumes single-process and lands on the same losses."""
    import shutil

    spec = _spec(prepared, tokens=256 * 8)
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, checkpoint_every=3, keep_checkpoints=True))
    single_run, single = _train(tmp_path / "single", spec)
    run = RunDir(tmp_path / "fsdp" / "runs" / spec.run_id).create(spec)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29534",
                           "-m", "scaling", "train", str(run.path)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ckpts = sorted((run.path / "checkpoints").glob("step_*"))
    assert [c.name for c in ckpts] == ["step_00000003", "step_00000006"]
    assert (ckpts[-1] / ".metadata").is_file() and not (ckpts[-1] / "model.pt").exists()  # sharded, not gathered
    shutil.rmtree(run.model_path)
    run.result_path.unlink()  # as if killed after its last checkpoint: a finished run is not retrained
    from trainer.execute import execute

    rec = execute(run)  # this process: resumes from step 6 of the sharded checkpoint
    assert any(r.get("event") == "resumed" and r["at"] == 6 for r in run.metrics())
    assert rec["val_loss_speech"] == pytest.approx(single["val_loss_speech"], rel=1e-4)


@pytest.mark.slow
def test_scale_path_checks_in_two_processes(prepared, tmp_path):
    """One 2-process launch (tests/helpers/dist_checks.py), compared with one process here:
    meta-device init + rank-0 safetensors + broadcast == from_pretrained + growth (exactly);
    packed validation == per-document losses; sharded evaluation writes identical per-item files;
    activation checkpointing + per-block compile + FSDP reproduce one eager process's losses."""
    import json

    import numpy as np
    import torch

    from helpers.scale_refs import per_document_loss, tiny_text_lm
    from scaling.shapes import shape_from_hf_config
    from trainer.attention import packed_inputs
    from trainer.bench import make_batches
    from scaling.datadir import DataDir
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.eval.suite import EvalSuite
    from trainer.kernels.chunked_ce import lm_loss
    from trainer.model import build_model, extend_vocab, load_model
    from trainer.validate import val_loss, val_windows

    torch.set_num_threads(1)
    m = DataDir.open(prepared).manifest
    tok = load_tokenizer(prepared / "tokenizer")
    eos = tok.eos_token_id
    text_lm = tmp_path / "text_lm"
    tiny_text_lm(text_lm, m["text_model_vocab"], prepared / "tokenizer_text", tie=False)  # untied, as the 7B
    windows = val_windows(DataDir.open(prepared).tokens("interleaved", "val"), 48, 5)  # 3 batches of 2: rank 1 pads
    windows[:, [9, 21, 30]] = eos  # several documents per window: the masks matter
    np.save(tmp_path / "windows.npy", windows)
    shape = shape_from_hf_config(json.loads((text_lm / "config.json").read_text())).with_vocab(m["speech_model_vocab"])
    batches = torch.stack(make_batches(3, 4, 32, shape.vocab_size, eos, seed=1))
    np.save(tmp_path / "train.npy", batches.numpy())
    out = tmp_path / "out"
    out.mkdir()
    cfg = {"out": str(out), "text_lm": str(text_lm), "speech_vocab": m["speech_model_vocab"], "text_vocab": m["text_vocab_size"],
           "embedding_init": "normal", "windows": str(tmp_path / "windows.npy"), "eos": eos, "tokenizer": str(prepared / "tokenizer"),
           "benchmarks": str(prepared / "benchmarks"), "bench_names": ["swuggy", "ssc"], "train_batches": str(tmp_path / "train.npy")}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29535",
                           str(Path(__file__).parent / "helpers" / "dist_checks.py"), str(tmp_path / "cfg.json")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    res = json.loads((out / "result.json").read_text())

    # meta-device init equals from_pretrained + growth, exactly
    ref = load_model(text_lm, attn="sdpa")
    extend_vocab(ref, m["speech_model_vocab"], real_rows=m["text_vocab_size"], init="normal", seed=3)
    ref.eval()
    sharded = torch.load(out / "meta_init.pt", weights_only=True)
    plain = ref.state_dict()
    assert set(sharded) == set(plain)
    assert all(torch.equal(sharded[k], plain[k]) for k in plain), [k for k in plain if not torch.equal(sharded[k], plain[k])]
    # packed validation equals the per-document losses, one and two processes, chunked head or not
    per_doc = per_document_loss(ref, windows, eos)
    assert val_loss(ref, windows, batch_size=2, eos=eos) == pytest.approx(per_doc, rel=1e-5)
    assert res["val_loss_fsdp"] == pytest.approx(per_doc, rel=1e-5)
    assert res["val_loss_fsdp_plain_head"] == pytest.approx(per_doc, rel=1e-5)
    assert val_loss(ref, windows, batch_size=2) != pytest.approx(per_doc, rel=1e-4)  # without masks it differs
    # evaluation sharded over 2 ranks writes the same per-item files as one process
    suite = EvalSuite.from_data(prepared / "benchmarks", ["swuggy", "ssc"], tok, SpeechVocab.of(tok), batch_size=3)
    for name, r in suite.run_detailed(ref, n_resamples=100, seed=0).items():
        r.write_csv(tmp_path / "one" / f"{name}.csv")
        assert (tmp_path / "one" / f"{name}.csv").read_bytes() == (out / "per_item" / f"{name}.csv").read_bytes()
    # activation checkpointing + compile + FSDP: the eager single-process losses
    assert res["compiled_layers"] == shape.num_layers
    eager = build_model(shape, seed=7, attn="sdpa")
    opt = torch.optim.AdamW(eager.parameters(), lr=1e-3)
    losses = []
    for b in batches:
        ids, valid, extra = packed_inputs(b, torch.ones(b.shape[0], b.shape[1] - 1, dtype=torch.bool), eos, attn="sdpa")
        loss = lm_loss(eager, ids, valid, extra, chunked=False) / valid.sum()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert res["compile_ckpt_fsdp_losses"] == pytest.approx(losses, rel=1e-4)
