"""The run id hashes what changes results and nothing else; ids of specs written before this rule hold."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from scaling.spec import OPERATIONAL_TRAIN, RunSpec, TrainConfig, id_payload

FROZEN = sorted((Path(__file__).parent / "data" / "frozen_specs").glob("*.yaml"))


@pytest.mark.parametrize("path", FROZEN, ids=lambda p: p.stem)
def test_frozen_specs_keep_their_ids(path):
    """Specs written by `scaling plan` on 2026-11-30 (before the explicit id rule) keep the id they were written with."""
    recorded = yaml.safe_load(path.read_text())["run_id"]
    assert RunSpec.load(path).run_id == recorded


def _spec() -> RunSpec:
    return RunSpec.load(FROZEN[0])


def _with_train(spec, **kw):
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, **kw))


@pytest.mark.parametrize("knob, value", [
    ("compile", True), ("checkpoint_every", 7), ("keep_checkpoints", True), ("eval_every", 3),
    ("activation_checkpointing", True), ("chunked_ce", True), ("liger_ce", True),
])
def test_operational_knobs_do_not_change_the_id(knob, value):
    spec = _spec()
    assert _with_train(spec, **{knob: value}).run_id == spec.run_id


def test_micro_batch_does_not_change_the_id_while_the_global_batch_stays():
    spec = _spec()
    micro = _with_train(spec, micro_batch_size=spec.train.batch_size // 2)
    assert micro.run_id == spec.run_id
    assert _with_train(spec, batch_size=spec.train.batch_size * 2).run_id != spec.run_id


@pytest.mark.parametrize("change", [
    dict(train=dict(lr=1e-4)), dict(train=dict(beta2=0.99)), dict(train=dict(schedule="wsd")),
    dict(train=dict(seq_len=256)), dict(train=dict(doc_mask=False)), dict(seed=1), dict(tokens=12345 * 512),
    dict(data_fingerprint="0" * 16), dict(init="run:other-run"), dict(streams={"speech": 2.0}),
])
def test_result_changing_fields_change_the_id(change):
    spec = _spec()
    train = change.pop("train", {})
    other = dataclasses.replace(_with_train(spec, **train), **change)
    assert other.run_id != spec.run_id


def test_a_field_added_later_changes_no_existing_id():
    """A new field hashed only when set: at its default, the payload (hence the id) is what it was."""
    spec = _spec().to_dict()
    train_defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    base = id_payload(spec)
    later = dict(spec, train=dict(spec["train"], precision="amp-bf16"), new_top_level=None)
    assert id_payload(later, train_defaults={**train_defaults, "precision": "amp-bf16"},
                      spec_defaults={"new_top_level": None, "data_dir": "", "sweep": ""}) == base
    changed = dict(spec, train=dict(spec["train"], precision="bf16"))
    assert id_payload(changed, train_defaults={**train_defaults, "precision": "amp-bf16"}) != base


def test_where_a_run_lives_is_not_in_the_id():
    spec = _spec()
    assert dataclasses.replace(spec, data_dir="/elsewhere", sweep="another").run_id == spec.run_id
    assert set(OPERATIONAL_TRAIN) <= {f.name for f in dataclasses.fields(TrainConfig)}
