"""The multi-process path on the inputs users really have (2 gloo processes on CPU against one process):
a text LM saved in bf16, as every published Qwen2.5 checkpoint is, and evaluations in the middle of
training. Both once went wrong only under FSDP: the meta-device build took the config's bf16 dtype
(bf16 master weights and AdamW moments while result.json said amp-bf16), and scoring under
``torch.inference_mode`` left inference tensors in FSDP's gathered parameters."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from scaling.rundir import RunDir
from helpers.runs import toy_spec, train_spec


def _torchrun(run_path, port: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
                           "-m", "scaling.cli", "train", str(run_path)], env=env, capture_output=True, text=True, timeout=600)


def _dcp_dtypes(ckpt) -> dict:
    """dtype of every tensor in a sharded (DCP) checkpoint, from its metadata alone."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    meta = FileSystemReader(str(ckpt)).read_metadata().state_dict_metadata
    return {k: m.properties.dtype for k, m in meta.items() if isinstance(m, TensorStorageMetadata)}


@pytest.mark.slow
def test_bf16_text_lm_and_mid_training_evaluation_under_fsdp(prepared, tmp_path):
    """A bf16-saved text LM initialises fp32 master weights and fp32 AdamW state under amp-bf16 in 2
    processes, and train -> evaluate (benchmarks + validation) -> train gives one process's per-step
    losses, periodic evaluations and final metrics."""
    import torch

    from helpers.scale_refs import tiny_text_lm
    from scaling.datadir import DataDir

    m = DataDir.open(prepared).manifest
    text_lm = tmp_path / "text_lm"
    tiny_text_lm(text_lm, m["text_model_vocab"], prepared / "tokenizer_text", dtype=torch.bfloat16)
    assert json.loads((text_lm / "config.json").read_text())["dtype"] == "bfloat16"  # the case that went wrong
    spec = toy_spec(prepared, arm="interleaved", tokens=256 * 7, init=str(text_lm), benchmarks=["swuggy", "ssc"],
                    bench_items=6)
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, eval_every=2, checkpoint_every=5,
                                                               keep_checkpoints=True))
    single_run, single = train_spec(tmp_path / "single", spec)
    assert single["effective"]["master_dtype"] == "float32"

    run = RunDir(tmp_path / "fsdp" / "runs" / spec.run_id).create(spec)
    proc = _torchrun(run.path, 29541)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rec = run.result()
    assert rec["effective"]["fsdp"] and rec["effective"]["world_size"] == 2
    assert rec["effective"]["master_dtype"] == "float32"
    # what the sharded checkpoint holds: fp32 weights and fp32 AdamW moments
    dtypes = _dcp_dtypes(sorted((run.path / "checkpoints").glob("step_*"))[-1])
    weights = {k: v for k, v in dtypes.items() if k.startswith("model.")}
    moments = {k: v for k, v in dtypes.items() if k.startswith("optim.state.") and k.endswith(("exp_avg", "exp_avg_sq"))}
    assert weights and moments
    assert set(weights.values()) == {torch.float32}, {k: v for k, v in weights.items() if v != torch.float32}
    assert set(moments.values()) == {torch.float32}, {k: v for k, v in moments.items() if v != torch.float32}

    def steps(r):
        return [(x["step"], x["loss"]) for x in r.metrics() if "loss" in x and "branch" not in x]

    def periodic(r):
        return [x for x in r.metrics() if x.get("kind") == "periodic"]

    assert [s for s, _ in steps(run)] == [s for s, _ in steps(single_run)]
    assert [x for _, x in steps(run)] == pytest.approx([x for _, x in steps(single_run)], rel=1e-5)
    assert len(periodic(run)) == len(periodic(single_run)) == 3  # after steps 2, 4 and 6 of 7
    for a, b in zip(periodic(run), periodic(single_run)):
        assert a["val_loss_speech"] == pytest.approx(b["val_loss_speech"], rel=1e-5)
        for k in ("swuggy", "ssc"):
            assert a[k] == pytest.approx(b[k], abs=1e-9), k
    assert rec["val_loss_speech"] == pytest.approx(single["val_loss_speech"], rel=1e-5)


@pytest.fixture
def one_process_group():
    """A one-process gloo group (FSDP on one CPU process), destroyed afterwards."""
    import torch

    from trainer.parallel import close_process_group, ensure_process_group

    assert ensure_process_group(torch.device("cpu"), single=True)
    yield
    close_process_group()
    assert not torch.distributed.is_initialized()


def _toy(attn="sdpa", seed=0):
    from scaling.shapes import DEMO
    from trainer.model import build_model

    return build_model(DEMO["toy-xs"].with_vocab(320), seed, attn=attn)


def _batch(seed=0, rows=2, T=48, eos=5):
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(6, 320, (rows, T), generator=g)
    ids[:, [11 + seed, 30]] = eos  # three documents per row, boundaries moving from batch to batch
    return ids


def _train_steps(model, opt, batches, *, attn="sdpa", compiled=False, chunked=False) -> list[float]:
    import torch

    from trainer.attention import packed_inputs
    from trainer.kernels.chunked_ce import lm_loss

    out = []
    for ids in batches:
        valid = torch.ones(ids.shape[0], ids.shape[1] - 1, dtype=torch.bool)
        ids2, val, extra = packed_inputs(ids, valid, 5, attn=attn)
        loss = lm_loss(model, ids2, val, extra, chunked=chunked, compiled=compiled) / val.sum()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        out.append(loss.item())
    return out


def test_scoring_under_fsdp_leaves_the_model_trainable(one_process_group):
    """Evaluation scores the training model itself; under FSDP2 an inference-mode forward would leave
    inference tensors in the gathered parameters and the next training step would fail. Scoring first,
    then training, gives the same scores and losses as the unsharded model."""
    import torch

    from scaling.spec import TrainConfig
    from trainer.eval.scoring import Encoded, sequence_nll
    from trainer.parallel import parallelize

    items = [Encoded(_batch(k, rows=1)[0, :12 + k].tolist(), 6) for k in range(5)]
    ref = _toy()
    sharded, _ = parallelize(_toy(), 1, TrainConfig(), device=torch.device("cpu"), fsdp=True)
    got = sequence_nll(sharded, items, batch_size=2).value("mean")
    want = sequence_nll(ref, items, batch_size=2).value("mean")
    assert got == pytest.approx(want, rel=1e-6)
    batches = [_batch(k) for k in range(2)]
    lr = dict(lr=1e-3)
    losses = _train_steps(sharded, torch.optim.AdamW(sharded.parameters(), **lr), batches)
    assert losses == pytest.approx(_train_steps(ref, torch.optim.AdamW(ref.parameters(), **lr), batches), rel=1e-6)


def test_adamw_is_one_multi_tensor_kernel_under_fsdp(one_process_group):
    """AdamW is fused on CUDA and foreach elsewhere, FSDP's DTensors included (never the per-tensor
    loop), and the sharded foreach step equals the plain single-tensor one."""
    import torch

    from scaling.spec import TrainConfig
    from trainer.parallel import adamw, parallelize

    kw = dict(lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    sharded, _ = parallelize(_toy(), 1, TrainConfig(), device=torch.device("cpu"), fsdp=True)
    opt, name = adamw(sharded, device=torch.device("cpu"), **kw)
    assert name == "adamw (foreach)" and all(g["foreach"] and not g["fused"] for g in opt.param_groups)
    assert type(next(sharded.parameters())).__name__ == "DTensor"
    cuda_opt, cuda_name = adamw(_toy(), device=torch.device("cuda"), **kw)  # built, not stepped: no GPU here
    assert cuda_name == "adamw (fused)" and all(g["fused"] for g in cuda_opt.param_groups)
    ref = _toy()
    decay = [p for p in ref.parameters() if p.dim() >= 2]
    rest = [p for p in ref.parameters() if p.dim() < 2]
    ref_opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=1e-3,
                                betas=(0.9, 0.95), foreach=False)
    batches = [_batch(k) for k in range(3)]
    assert _train_steps(sharded, opt, batches) == pytest.approx(_train_steps(ref, ref_opt, batches), rel=1e-6)


def test_process_group_has_a_timeout_and_is_destroyed(monkeypatch):
    """The trainer's process group waits SCALING_DIST_TIMEOUT_S (default DIST_TIMEOUT_S) in a collective,
    not NCCL's 10 minutes, and is destroyed when the run ends (cleanly: a barrier first)."""
    import datetime

    import torch

    from scaling.errors import ConfigError
    from trainer import parallel

    calls = []
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda *a, **k: calls.append(("init", a, k)))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: bool(calls) and calls[-1][0] != "destroy")
    monkeypatch.setattr(torch.distributed, "barrier", lambda *a, **k: calls.append(("barrier",)))
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda *a, **k: calls.append(("destroy",)))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert parallel.ensure_process_group(torch.device("cpu"))
    assert calls[0][1] == ("gloo",) and calls[0][2]["timeout"] == datetime.timedelta(seconds=parallel.DIST_TIMEOUT_S)
    assert not parallel.ensure_process_group(torch.device("cpu"))  # joined once
    parallel.close_process_group()
    assert [c[0] for c in calls] == ["init", "barrier", "destroy"]
    calls.clear()
    monkeypatch.setenv("SCALING_DIST_TIMEOUT_S", "7200")
    assert parallel.ensure_process_group(torch.device("cuda"))
    assert calls[0][1] == ("nccl",) and calls[0][2]["timeout"] == datetime.timedelta(seconds=7200)
    parallel.close_process_group(clean=False)  # after an error: no barrier its peers may never reach
    assert [c[0] for c in calls] == ["init", "destroy"]
    for bad in ("0", "-5", "nan", "inf", "soon"):
        monkeypatch.setenv("SCALING_DIST_TIMEOUT_S", bad)
        with pytest.raises(ConfigError, match="SCALING_DIST_TIMEOUT_S"):
            parallel.dist_timeout_s()


def test_logged_throughput_leaves_out_evaluations_and_checkpoints(prepared, tmp_path, monkeypatch):
    """tokens/s and MFU per logged row are those of the optimiser steps: an evaluation and the checkpoints
    between two rows (here made to take 10^6 s of a driven clock) do not enter the interval."""
    from trainer import loop

    offset = [0.0]
    real = loop._clock
    monkeypatch.setattr(loop, "_clock", lambda: real() + offset[0])

    def slow_evaluator(model, tokenizer):
        offset[0] += 1e6
        return {}

    real_save = loop.Trainer._save

    def slow_save(self, p):
        offset[0] += 1e6
        return real_save(self, p)

    monkeypatch.setattr(loop.Trainer, "_save", slow_save)
    spec = toy_spec(prepared, tokens=256 * 6)
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, eval_every=1, checkpoint_every=1))
    run = RunDir(tmp_path / "runs" / spec.run_id).create(spec)
    summary = loop.train_run(run, slow_evaluator)[0]
    rows = [r for r in run.metrics() if "tokens_per_s" in r]
    assert len(rows) == 6
    # every row's interval held an evaluation and a checkpoint (2 x 10^6 s); a step takes well under a second
    assert min(r["tokens_per_s"] for r in rows) > 256 / 10.0
    assert summary["step_seconds"] < 60
