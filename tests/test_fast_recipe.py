"""The fast recipe's train switches on the CPU: each one equal to the plain loss, none of them in the run id,
compile without graph breaks on the fast path, and the 'auto' micro-batch and checkpointing from
`scaling memory`."""
import dataclasses

import pytest
import torch

from scaling.errors import ConfigError
from scaling.shapes import DEMO
from scaling.spec import TrainConfig

EOS = 5


def _batches(n=3, rows=2, T=48):
    g = torch.Generator().manual_seed(0)
    out = []
    for k in range(n):
        ids = torch.randint(6, 320, (rows, T), generator=g)
        ids[:, [9 + 3 * k, 30]] = EOS  # documents whose boundaries move from batch to batch
        out.append(ids)
    return out


def _losses(tc: TrainConfig, batches, *, backend="inductor", fsdp=None) -> list[float]:
    """Three AdamW steps of toy-xs through the trainer's parallelize and loss path, with ``tc``'s switches."""
    from trainer.attention import packed_inputs
    from trainer.kernels.chunked_ce import lm_loss
    from trainer.model import attention_implementation, build_model
    from trainer.parallel import adamw, parallelize

    attn = attention_implementation(tc.attention, "cpu")
    model = build_model(DEMO["toy-xs"].with_vocab(320), 0, attn=attn)
    model, _ = parallelize(model, 1, tc, device=torch.device("cpu"), compile_backend=backend, fsdp=fsdp)
    opt, _ = adamw(model, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, device=torch.device("cpu"))
    out = []
    for ids in batches:
        valid = torch.ones(ids.shape[0], ids.shape[1] - 1, dtype=torch.bool)
        i2, v2, extra = packed_inputs(ids, valid, EOS, attn=model.config._attn_implementation)
        loss = lm_loss(model, i2, v2, extra, chunked=tc.chunked_ce, compiled=tc.compiled_ce) / v2.sum()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        out.append(loss.item())
    return out


@pytest.mark.parametrize("switches", [
    dict(attention="varlen"), dict(compiled_ce=True), dict(activation_checkpointing="op"),
    dict(activation_checkpointing=2), dict(activation_checkpointing="full"),
    dict(attention="varlen", compiled_ce=True, activation_checkpointing="op", compile=True),
])
def test_each_switch_gives_the_plain_losses(switches):
    batches = _batches()
    plain = _losses(TrainConfig(attention="sdpa"), batches)
    assert _losses(TrainConfig(**switches), batches, backend="aot_eager") == pytest.approx(plain, rel=1e-6)


def test_checkpointing_modes_wrap_what_they_say():
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper

    from trainer.model import build_model
    from trainer.parallel import parallelize

    def wrapped(ac):
        model = build_model(DEMO["toy-ml"], 0, attn="sdpa")  # 4 blocks
        model, _ = parallelize(model, 1, TrainConfig(activation_checkpointing=ac), device=torch.device("cpu"))
        return [isinstance(b, CheckpointWrapper) for b in model.model.layers], model

    assert wrapped(False)[0] == [False] * 4
    assert wrapped(True)[0] == wrapped("full")[0] == wrapped(1)[0] == [True] * 4
    assert wrapped(2)[0] == [True, False, True, False] and wrapped(3)[0] == [True, False, False, True]
    flags, model = wrapped("op")
    assert flags == [True] * 4 and model.model.layers[0].checkpoint_fn.keywords.get("context_fn") is not None


def test_fast_path_compiles_whole_with_no_graph_break_or_recompile():
    """Per-block compile with fullgraph=True on the fast path (varlen attention, selective checkpointing,
    compiled CE): no graph break (fullgraph would raise) and one graph for batches whose document
    boundaries differ. The HF `kernels` wrapper around the attention forward, which breaks the graph,
    is bypassed (trainer.parallel.plain_forwards)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    tc = TrainConfig(attention="varlen", compiled_ce=True, activation_checkpointing="op", compile=True)
    _losses(tc, _batches(n=3), backend="aot_eager")
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] >= 1
    frames = counters["frames"]["ok"]
    _losses(tc, _batches(n=2), backend="aot_eager")  # a new model: its blocks compile once more, nothing else
    assert counters["frames"]["ok"] - frames <= frames


def test_bf16_params_wraps_one_process_in_fsdp(prepared, tmp_path):
    """bf16_params: true puts one process under FSDP2 (a one-process group the trainer opens and closes);
    on the CPU the compute stays fp32, so the losses equal the plain run's."""
    from helpers.runs import toy_spec, train_spec

    spec = toy_spec(prepared, tokens=256 * 4)
    plain_run, plain = train_spec(tmp_path / "plain", spec)
    fast = dataclasses.replace(spec, train=dataclasses.replace(spec.train, bf16_params=True))
    assert fast.run_id == spec.run_id  # operational: never in the run id
    run, rec = train_spec(tmp_path / "fsdp", fast)
    assert rec["effective"]["fsdp"] and rec["effective"]["world_size"] == 1
    assert rec["effective"]["bf16_params"] is False  # CPU: fp32 compute, as autocast
    assert not torch.distributed.is_initialized()  # the trainer closed the group it opened
    losses = lambda r: [x["loss"] for x in r.metrics() if "loss" in x]
    assert losses(run) == pytest.approx(losses(plain_run), rel=1e-6)


def test_switches_are_validated_and_not_in_the_run_id(prepared):
    from helpers.runs import toy_spec

    spec = toy_spec(prepared)
    fast = dict(attention="varlen", compiled_ce=True, bf16_params=True, activation_checkpointing="op",
                micro_batch_size="auto", memory_fraction=0.8, compile=True, liger_kernels=True)
    assert dataclasses.replace(spec, train=dataclasses.replace(spec.train, **fast)).run_id == spec.run_id
    for key, bad in (("attention", "fast"), ("bf16_params", "yes"), ("activation_checkpointing", "some"),
                     ("activation_checkpointing", 0), ("micro_batch_size", "max"), ("micro_batch_size", 3),
                     ("memory_fraction", 0.0), ("memory_fraction", 1.5), ("compiled_ce", "true")):
        with pytest.raises(ConfigError, match=f"train.{key}"):
            dataclasses.replace(spec.train, **{key: bad}).validate()


def test_options_that_cannot_run_here_are_refused():
    from trainer.model import attention_implementation, build_model
    from trainer.parallel import parallelize

    model = build_model(DEMO["toy-xs"], 0, attn="sdpa")
    with pytest.raises(ConfigError, match="train.liger_kernels.*CUDA|CUDA.*train.liger_kernels"):
        parallelize(model, 1, TrainConfig(liger_kernels=True), device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="pick one"):
        parallelize(model, 1, TrainConfig(liger_ce=True, compiled_ce=True), device=torch.device("cuda"))
    with pytest.raises(ConfigError, match="resolved"):
        parallelize(model, 1, TrainConfig(activation_checkpointing="auto"), device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="flash-attn"):
        attention_implementation("flash_attention_2", "cpu")
    with pytest.raises(ConfigError, match="GPU"):
        attention_implementation("flex_attention", "cpu")
    assert attention_implementation("auto", "cpu") == "sdpa" and attention_implementation("varlen", "cpu") == "varlen"


def test_auto_micro_batch_and_checkpointing_follow_scaling_memory():
    """'auto' takes the largest micro-batch (a divisor of the process's rows) whose step `scaling memory`
    fits in memory_fraction of the device, without recompute when a micro-batch of MIN_MICRO fits, else
    with full checkpointing; nothing fitting is an error naming the field."""
    from scaling.memory import speech_shape
    from trainer.autotune import MIN_MICRO, resolve_memory, step_plan

    shape = speech_shape("qwen2.5-0.5b")
    cuda = torch.device("cuda")  # the estimate only: nothing runs on it
    tc = TrainConfig(seq_len=2048, batch_size=128, micro_batch_size="auto", activation_checkpointing="auto",
                     compiled_ce=True, attention="varlen", memory_fraction=0.9)

    def plan(t, micro, ac, gib):
        return step_plan(shape, t, world=8, micro=micro, ac=ac, attn="varlen", device=cuda, memory_gib=gib)

    got = resolve_memory(shape, tc, world=8, device=cuda, attn="varlen", memory_gib=80)
    assert got.activation_checkpointing is False and 16 % got.micro_batch_size == 0
    assert plan(got, got.micro_batch_size, False, 72).fits
    bigger = [m for m in range(got.micro_batch_size + 1, 17) if 16 % m == 0]
    assert all(not plan(got, m, False, 72).fits for m in bigger)
    # a device too small for MIN_MICRO rows without recompute: full checkpointing
    small = resolve_memory(shape, tc, world=8, device=cuda, attn="varlen", memory_gib=12)
    assert small.activation_checkpointing == "full"
    assert not plan(tc, MIN_MICRO, False, 12 * 0.9).fits and plan(small, small.micro_batch_size, "full", 12 * 0.9).fits
    # an explicit setting is kept; only the other 'auto' is resolved
    keep = resolve_memory(shape, dataclasses.replace(tc, activation_checkpointing="op"), world=8, device=cuda,
                          attn="varlen", memory_gib=80)
    assert keep.activation_checkpointing == "op" and isinstance(keep.micro_batch_size, int)
    assert resolve_memory(shape, TrainConfig(), world=1, device=cuda, attn="sdpa", memory_gib=80) == TrainConfig()
    with pytest.raises(ConfigError, match="train.micro_batch_size"):
        resolve_memory(shape, tc, world=8, device=cuda, attn="varlen", memory_gib=2)


def test_auto_settings_train_a_run(prepared, tmp_path):
    """A run with both 'auto' values trains, and result.json says what was chosen."""
    from helpers.runs import toy_spec, train_spec

    spec = toy_spec(prepared, tokens=256 * 2)
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, micro_batch_size="auto",
                                                               activation_checkpointing="auto"))
    _, rec = train_spec(tmp_path, spec)
    eff = rec["effective"]
    assert eff["micro_batch_size"] == 4 and eff["accumulation"] == 1 and eff["activation_checkpointing"] is False


def test_one_process_fsdp_run_resumes_after_a_crash(prepared, tmp_path, monkeypatch):
    """With bf16_params: true (FSDP on one process) a crash leaves the process group closed, and the rerun
    resumes from the last checkpoint onto the uninterrupted run's losses."""
    from helpers.runs import crash_at_step, toy_spec, train_spec
    from scaling.rundir import RunDir
    from trainer import loop
    from trainer.execute import execute

    spec = toy_spec(prepared, tokens=256 * 6)
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, bf16_params=True, checkpoint_every=2,
                                                               keep_checkpoints=True))
    ref_run, ref = train_spec(tmp_path / "ref", spec)
    real = crash_at_step(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        train_spec(tmp_path / "crash", spec)
    assert not torch.distributed.is_initialized()
    monkeypatch.setattr(loop.Trainer, "step", real)
    run = RunDir(tmp_path / "crash" / "runs" / spec.run_id)
    rec = execute(run)
    steps = lambda r: [x["step"] for x in r.metrics() if "loss" in x]
    losses = lambda r: [x["loss"] for x in r.metrics() if "loss" in x]
    assert steps(run) == steps(ref_run)
    assert losses(run) == pytest.approx(losses(ref_run), rel=1e-6)
    assert any(r.get("event") == "resumed" and r["at"] == 4 for r in run.metrics())
    assert rec["val_loss_speech"] == pytest.approx(ref["val_loss_speech"], rel=1e-6)
