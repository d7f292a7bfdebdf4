"""train.init_std: the weight std of a randomly initialised model (text LMs, the textless arm)."""
import dataclasses
import math

import pytest
import torch

from conftest import write_sweep
from helpers.runs import toy_spec
from scaling.cli import main
from scaling.errors import ConfigError
from scaling.rundir import RunDir
from scaling.shapes import ModelShape
from scaling.spec import init_std_value
from sweeps.grid import resolve
from sweeps.schema import load_sweep

SHAPE = ModelShape(64, 2, 4, 2, 256, 512)  # hidden 64: enough weights for a std to within a few percent


def _weight_stds(model) -> list[float]:
    return [p.detach().float().std().item() for n, p in model.named_parameters() if p.dim() == 2]


@pytest.mark.parametrize("init_std,expect", [(None, 0.02), (0.1, 0.1), ("small_init", math.sqrt(2 / (5 * 64)))])
def test_random_init_draws_every_matrix_at_the_std_asked_for(init_std, expect):
    from trainer.model import build_model

    std = None if init_std is None else init_std_value(init_std, SHAPE.hidden_size)
    model = build_model(SHAPE, 0, init_std=std)
    stds = _weight_stds(model)
    assert len(stds) >= 10  # embeddings, q/k/v/o, gate/up/down of both layers
    assert all(s == pytest.approx(expect, rel=0.08) for s in stds), stds
    assert model.config.initializer_range == pytest.approx(expect)  # saved with the model


def test_small_init_follows_the_width():
    assert init_std_value("small_init", 10) == pytest.approx(0.2)
    assert init_std_value("small_init", 4000) == pytest.approx(0.01)
    assert init_std_value("hf", 12) is None and init_std_value(0.05, 12) == 0.05


def test_a_run_starts_from_the_init_std_of_its_spec(prepared, tmp_path):
    """The trainer's random init (one process and the sharded path alike) uses the spec's init_std."""
    from trainer.loop import init_model, init_sharded

    spec = toy_spec(prepared, tokens=2560)
    hidden = spec.shape.hidden_size
    run = RunDir(tmp_path / "runs" / "r")
    base = init_model(spec, run, {})
    small = dataclasses.replace(spec, train=dataclasses.replace(spec.train, init_std="small_init"))
    model = init_model(small, run, {})
    q = lambda m: m.model.layers[0].self_attn.q_proj.weight.detach()  # noqa: E731
    assert q(base).std().item() == pytest.approx(0.02, rel=0.15)
    assert q(model).std().item() == pytest.approx(math.sqrt(2 / (5 * hidden)), rel=0.15)
    sharded, _ = init_sharded(small, run, {}, torch.device("cpu"), 1)
    for (n, a), (_, b) in zip(model.state_dict().items(), sharded.state_dict().items()):
        assert torch.equal(a, b), n


def test_init_std_is_in_the_id_only_when_set(prepared):
    spec = toy_spec(prepared, tokens=2560)
    with_std = lambda v: dataclasses.replace(spec, train=dataclasses.replace(spec.train, init_std=v))  # noqa: E731
    assert with_std("hf").run_id == spec.run_id  # every existing id stays valid
    assert len({spec.run_id, with_std("small_init").run_id, with_std(0.05).run_id}) == 3
    with pytest.raises(ConfigError, match="init_std"):
        with_std("xavier").validate()


@pytest.mark.parametrize("value,expect", [("small_init", "small_init"), ("1e-2", 0.01), (0.05, 0.05)])
def test_sweep_reads_a_name_or_a_number(prepared, tmp_path, value, expect):
    train = {"seq_len": 64, "batch_size": 4, "val_sequences": 4, "init_std": value}
    sw = load_sweep(write_sweep(tmp_path / "sweep.yaml", prepared, train=train))
    assert sw.train.init_std == expect
    specs = resolve(sw)
    assert {s.train.init_std for s in specs} == {expect}  # the text LMs start from the same init


@pytest.mark.parametrize("value", ["xavier", 2.0, True, -0.1])
def test_bad_init_std_names_the_field(prepared, tmp_path, capsys, value):
    sweep = write_sweep(tmp_path / "sweep.yaml", prepared, train={"seq_len": 64, "batch_size": 4, "init_std": value})
    assert main(["plan", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert str(sweep) in err and "'train.init_std'" in err, err
