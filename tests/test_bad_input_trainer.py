"""Bad input and faults on the trainer side (issue 28): a non-finite gradient norm, a checkpoint never
written from non-finite state, checkpoints verified on load with fallback, a full disk, damaged run
records, and data checked when a run opens it (tokenizer files, token ids, benchmark items).

The loop mechanics are tested in this process; the bad-input rows run the CLI as a user does
(tests/helpers/bad_input.py: exit status 2, the file and field named, no traceback, nothing written)."""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil

import numpy as np
import pytest
import torch

from conftest import write_sweep
from helpers.bad_input import Case, run_case
from helpers.runs import crash_at_step, toy_spec, train_spec
from scaling.errors import ConfigError
from scaling.rundir import RunDir


def _with(spec, **train):
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, **train))


def _losses(run):
    return [(r["step"], r["loss"]) for r in run.metrics() if "loss" in r and "branch" not in r]


def _ckpts(run) -> list[str]:
    return sorted(p.name for p in (run.path / "checkpoints").glob("step_*"))


# -- defect 2: a non-finite gradient norm, non-finite state ------------------------------------------
def test_non_finite_gradient_norm_stops_before_the_optimiser_step(prepared, tmp_path, monkeypatch):
    """A finite loss with an infinite gradient: the run stops at that step, the optimiser does not step
    (parameters unchanged), and the checkpoints written before stay intact and the last good one named."""
    from trainer import checkpoint, loop

    real = loop.Trainer.step
    seen = {}

    def step(self, p, total, limit):
        if p.step != 5:
            return real(self, p, total, limit)
        w = next(self.model.parameters())
        hook = w.register_hook(lambda g: torch.full_like(g, float("inf")))
        before = [q.detach().clone() for q in self.model.parameters()]
        try:
            return real(self, p, total, limit)
        except FloatingPointError:
            seen["unchanged"] = all(torch.equal(a, b) for a, b in zip(before, self.model.parameters()))
            seen["at"] = (p.step, p.tokens)
            raise
        finally:
            hook.remove()

    monkeypatch.setattr(loop.Trainer, "step", step)
    spec = _with(toy_spec(prepared, tokens=256 * 8), checkpoint_every=2)
    with pytest.raises(FloatingPointError, match=r"non-finite gradient norm \(inf\) at step 5.*no optimiser step.*step_00000004"):
        train_spec(tmp_path, spec)
    assert seen == {"unchanged": True, "at": (5, 256 * 5)}  # no step taken, no tokens counted for it
    run = RunDir(tmp_path / "runs" / spec.run_id)
    assert run.status == "failed" and "gradient norm" in run.state()["error"]
    assert _ckpts(run) == ["step_00000002", "step_00000004"]
    assert all(checkpoint.check(run.path / "checkpoints" / c) is None for c in _ckpts(run))


def test_no_checkpoint_is_written_from_non_finite_parameters(prepared, tmp_path, monkeypatch):
    """An optimiser step that leaves a parameter non-finite (as an lr of inf did) right before a checkpoint:
    the checkpoint is not written, the run stops naming the last good one, which stays intact."""
    from trainer import checkpoint, loop

    real = loop.Trainer.step

    def step(self, p, total, limit):
        out = real(self, p, total, limit)
        if p.step == 4:
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
        return out

    monkeypatch.setattr(loop.Trainer, "step", step)
    spec = _with(toy_spec(prepared, tokens=256 * 8), checkpoint_every=2)
    with pytest.raises(FloatingPointError, match=r"3 non-finite parameter values.*step 4.*checkpoint step_00000004 is not "
                                                 r"written.*Last good checkpoint: .*step_00000002"):
        train_spec(tmp_path, spec)
    run = RunDir(tmp_path / "runs" / spec.run_id)
    assert _ckpts(run) == ["step_00000002"] and not list((run.path / "checkpoints").glob(".*"))
    st = torch.load(run.path / "checkpoints" / "step_00000002" / "model.pt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in st.values())
    assert checkpoint.check(run.path / "checkpoints" / "step_00000002") is None
    assert run.status == "failed" and "non-finite parameter" in run.state()["error"]


# -- defect 5: checkpoints verified on load ---------------------------------------------------------
def test_damaged_checkpoints_fall_back_to_an_older_intact_one_or_start_over(prepared, tmp_path, monkeypatch, capfd):
    from trainer import loop
    from trainer.execute import execute

    spec = _with(toy_spec(prepared, tokens=256 * 9), checkpoint_every=3, keep_checkpoints=True)
    ref_run, ref = train_spec(tmp_path / "ref", spec)
    runs = {}
    for case in ("newest", "all"):
        real = crash_at_step(monkeypatch, 7)
        with pytest.raises(KeyboardInterrupt):
            train_spec(tmp_path / case, spec)
        monkeypatch.setattr(loop.Trainer, "step", real)
        runs[case] = RunDir(tmp_path / case / "runs" / spec.run_id)
    ck = runs["newest"].path / "checkpoints"
    assert _ckpts(runs["newest"]) == ["step_00000003", "step_00000006"]
    # the record: every file's size and sha256, written inside the folder before its rename
    record = json.loads((ck / "step_00000006" / "checksums.json").read_text())
    assert set(record["files"]) == {"model.pt", "optimizer.pt", "rng.pt", "state.json"}
    import hashlib

    for name, want in record["files"].items():
        data = (ck / "step_00000006" / name).read_bytes()
        assert want == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    capfd.readouterr()

    # a truncated model.pt in the newest checkpoint: skipped with a warning naming it, the older one resumed
    model_pt = ck / "step_00000006" / "model.pt"
    model_pt.write_bytes(model_pt.read_bytes()[: model_pt.stat().st_size // 2])
    rec = execute(runs["newest"])
    err = capfd.readouterr().err
    assert "step_00000006" in err and "model.pt" in err and "not intact" in err
    assert [r["at"] for r in runs["newest"].metrics() if r.get("event") == "resumed"] == [3]
    assert _losses(runs["newest"]) == _losses(ref_run) and rec["val_loss_speech"] == ref["val_loss_speech"]
    assert (ck / ".step_00000006.corrupt").is_dir()  # set aside, never resumed from

    # every checkpoint damaged (a truncated file, a flipped byte): the run starts over and still matches
    ck = runs["all"].path / "checkpoints"
    model_pt = ck / "step_00000006" / "model.pt"
    model_pt.write_bytes(model_pt.read_bytes()[:100])
    opt = ck / "step_00000003" / "optimizer.pt"
    data = bytearray(opt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    opt.write_bytes(bytes(data))
    rec = execute(runs["all"])
    err = capfd.readouterr().err
    assert "step_00000006" in err and "step_00000003" in err and "optimizer.pt" in err and "starts over" in err
    assert not any(r.get("event") == "resumed" for r in runs["all"].metrics())
    assert _losses(runs["all"]) == _losses(ref_run) and rec["val_loss_speech"] == ref["val_loss_speech"]


# -- defect 8: a full disk mid-run --------------------------------------------------------------------
class SafetensorError(Exception):
    """What safetensors raises for an I/O error (its message quotes the OS error)."""


def _fail_checkpoint(monkeypatch):
    """torch.save fails as on a full disk from the second checkpoint on (a few bytes written first)."""
    real, calls = torch.save, []

    def save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) > 3:  # the first checkpoint (model, optimizer, rng) is written
            if hasattr(f, "write"):
                f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    return (".step_00000004.tmp", "model.pt"), "No space left on device (ENOSPC)"


def _fail_metrics(monkeypatch):
    from scaling import atomic

    real, calls = atomic.append_jsonl, []

    def append(path, row):
        calls.append(1)
        if len(calls) > 2:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        return real(path, row)

    monkeypatch.setattr(atomic, "append_jsonl", append)
    return ("metrics.jsonl",), "Disk quota exceeded (EDQUOT)"


def _fail_export(monkeypatch):
    from transformers import PreTrainedModel

    def save_pretrained(self, *a, **k):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_pretrained)
    return (".model.tmp",), "No space left on device (ENOSPC)"


@pytest.mark.parametrize("where", ["checkpoint", "metrics", "export"])
def test_a_full_disk_is_reported_marks_the_run_failed_and_is_not_an_attempt(prepared, tmp_path, monkeypatch, capsys, where):
    """`scaling train` on a run whose writes fail with ENOSPC / EDQUOT: exit 2, the file and the reason named,
    the run marked failed at once with resource_error (the attempt not counted), no partial folder left;
    the rerun resumes from the last intact checkpoint."""
    from scaling.cli import main
    from trainer import checkpoint

    spec = _with(toy_spec(prepared, tokens=256 * 6), checkpoint_every=2)
    run = RunDir(tmp_path / "runs" / spec.run_id).create(spec)
    parts, reason = {"checkpoint": _fail_checkpoint, "metrics": _fail_metrics, "export": _fail_export}[where](monkeypatch)
    assert main(["train", str(run.path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and reason in err and all(p in err for p in parts), err
    st = run.state()
    assert st["status"] == "failed" and st["resource_error"] is True and st["attempts"] == 0
    assert reason in st["error"] and parts[-1] in st["error"]
    assert not list(run.path.rglob("*.tmp")) and not list(run.path.glob("checkpoints/.*"))
    for c in _ckpts(run):
        assert checkpoint.check(run.path / "checkpoints" / c) is None
    if where == "checkpoint":
        assert _ckpts(run) == ["step_00000002"]
        monkeypatch.undo()
        assert main(["train", str(run.path), "--quiet"]) == 0
        assert [r["at"] for r in run.metrics() if r.get("event") == "resumed"] == [2]
        st = run.state()
        assert run.status == "done" and st["attempts"] == 1 and "resource_error" not in st


# -- defect 6 (run records) and 9 (data checked when a run opens it): the CLI rows ---------------------
def _corrupt(path, text) -> None:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _done(run, result) -> None:
    """A finished-looking run whose result.json holds ``result``."""
    run.set_state("running")
    run.set_state("done")
    _corrupt(run.result_path, result)


def _data_copy(prepared, tmp):
    data = tmp / "data"
    shutil.copytree(prepared, data, ignore=shutil.ignore_patterns("corpus"))
    return data


def _bad_tokenizer(data) -> None:
    f = data / "tokenizer" / "tokenizer.json"
    f.write_bytes(f.read_bytes()[:1000])


def _bad_benchmark_line(data) -> None:
    f = data / "benchmarks" / "swuggy.jsonl"
    lines = f.read_text().splitlines()
    row = json.loads(lines[2])
    row["positive"][0]["units"][1] = 10**6
    lines[2] = json.dumps(row)
    f.write_text("\n".join(lines) + "\n")


def _token_beyond_vocabulary(data) -> None:
    arr = np.load(data / "shards" / "speech_train.npy", mmap_mode="r+")
    arr[7::50] = 70000  # every training window reads one: before, an IndexError in the first step
    arr.flush()
    del arr


def _train_row(prepared, id, *, damage_run=None, damage_data=None, names=(), unchanged=(), **spec_kw) -> Case:
    """`scaling train runs/<id>` on a toy run over ``prepared`` (or a copy damaged by ``damage_data``)."""
    spec0 = toy_spec(prepared, **spec_kw)
    rel = f"runs/{spec0.run_id}"

    def setup(tmp):
        spec = spec0
        if damage_data is not None:
            data = _data_copy(prepared, tmp)
            damage_data(data)
            spec = dataclasses.replace(spec0, data_dir=str(data))
        run = RunDir(tmp / rel).create(spec)
        if damage_run is not None:
            damage_run(run)

    return Case(id, ["train", f"{{tmp}}/{rel}", "--quiet"], setup, names=names,
                absent=(f"{rel}/metrics.jsonl", f"{rel}/checkpoints", f"{rel}/model"),
                unchanged=tuple(f"{rel}/{f}" for f in unchanged))


def _sweep_row(prepared, id, command, damage_run, *, names=(), unchanged=(), absent=()) -> Case:
    """`scaling status|run SWEEP` on a one-arm sweep whose first run folder is damaged."""
    from sweeps.grid import resolve
    from sweeps.schema import load_sweep

    cfg = dict(models=["toy-xs"], arms=["textless"])
    probe = write_sweep(prepared.parent / f"probe-{os.getpid()}" / "sweep.yaml", prepared, **cfg)
    rel = f"runs/{resolve(load_sweep(probe))[0].run_id}"
    shutil.rmtree(probe.parent)

    def setup(tmp):
        sweep = write_sweep(tmp / "sweep.yaml", prepared, **cfg)
        spec = resolve(load_sweep(sweep))[0]
        damage_run(RunDir(tmp / rel).create(spec))

    return Case(id, [command, "{tmp}/sweep.yaml"], setup, names=names, absent=absent,
                unchanged=tuple(f"{rel}/{f}" for f in unchanged))


def _rows(prepared) -> dict[str, Case]:
    rows = [
        _sweep_row(prepared, "status-corrupt-state", "status", lambda run: (
            _done(run, json.dumps({"run_id": run.run_id, "status": "done"})), _corrupt(run.state_path, '{"status": "done", "att')),
                   names=("state.json", "damaged", "not valid JSON"), unchanged=("state.json",)),
        _sweep_row(prepared, "status-corrupt-result-is-not-done", "status", lambda run: _done(run, '{"run_id": "x", "val_lo'),
                   names=("result.json", "damaged"), unchanged=("result.json", "state.json")),
        _sweep_row(prepared, "status-result-of-another-run", "status",
                   lambda run: _done(run, json.dumps({"run_id": "other-run", "status": "done"})),
                   names=("result.json", "field 'run_id'", "other-run"), unchanged=("result.json",)),
        _sweep_row(prepared, "run-corrupt-result", "run", lambda run: _done(run, b"\xff\xfe{not json"),
                   names=("result.json", "not UTF-8"), unchanged=("result.json", "state.json"), absent=("results.csv",)),
        _train_row(prepared, "train-corrupt-state", damage_run=lambda run: _corrupt(run.state_path, "[1, 2"),
                   names=("state.json", "damaged"), unchanged=("state.json",)),
        _train_row(prepared, "train-corrupt-result", damage_run=lambda run: _done(run, "{"),
                   names=("result.json", "damaged"), unchanged=("state.json", "result.json")),
        _train_row(prepared, "train-corrupt-tokenizer", damage_data=_bad_tokenizer,
                   names=("data/tokenizer/tokenizer.json", "not valid JSON")),
        _train_row(prepared, "train-bad-benchmark-line", damage_data=_bad_benchmark_line, benchmarks=["swuggy"],
                   bench_items=6, names=("data/benchmarks/swuggy.jsonl", "line 3", "positive[0].units", "1000000")),
        _train_row(prepared, "train-token-beyond-vocabulary", damage_data=_token_beyond_vocabulary,
                   names=("data/shards/speech_train.npy", "field 'tokens'", "token 7 has id 70000")),
    ]
    return {r.id: r for r in rows}


ROWS = ["status-corrupt-state", "status-corrupt-result-is-not-done", "status-result-of-another-run", "run-corrupt-result",
        "train-corrupt-state", "train-corrupt-result", "train-corrupt-tokenizer", "train-bad-benchmark-line",
        "train-token-beyond-vocabulary"]


@pytest.mark.parametrize("row", ROWS)
def test_bad_input_row(prepared, tmp_path, row):
    case = _rows(prepared)[row]
    proc = run_case(case, tmp_path)
    assert "done: 1" not in proc.stdout  # a damaged record never makes a run done
    if row in ("train-corrupt-tokenizer", "train-bad-benchmark-line", "train-token-beyond-vocabulary"):
        # the run could not start: marked failed with the reason, before any step
        st = RunDir(tmp_path / case.argv[1].replace("{tmp}/", "")).state()
        assert st["status"] == "failed" and "ConfigError" in st["error"]


def test_status_never_calls_a_damaged_result_done(prepared, tmp_path):
    """In-process: RunDir.status is 'done' only with a result that parses and belongs to the run; state.json
    saying done without any result is a run to train again."""
    spec = toy_spec(prepared)
    run = RunDir(tmp_path / "runs" / spec.run_id).create(spec)
    run.set_state("done")
    assert run.status == "pending"  # no result.json
    run.result_path.write_text('{"run_id": "' + spec.run_id + '", "status": "done"}')
    assert run.status == "done"
    run.result_path.write_text('{"run_id": "' + spec.run_id + '", "sta')
    with pytest.raises(ConfigError, match="result.json.*damaged"):
        run.status
    other = RunDir(tmp_path / "elsewhere").create(spec)  # a folder not named by its run id: spec.yaml's id
    other.set_state("done")
    other.result_path.write_text(json.dumps({"run_id": "someone-else"}))
    with pytest.raises(ConfigError, match="belongs to run 'someone-else'"):
        other.status


def test_a_bad_benchmark_line_stops_a_sweep_before_any_run(prepared, tmp_path):
    """`scaling run` reads and encodes every benchmark item its runs will evaluate before the first run
    starts: a bad line is exit 2 naming the file and line, and no run folder is created."""
    def setup(tmp):
        data = _data_copy(prepared, tmp)
        _bad_benchmark_line(data)
        write_sweep(tmp / "sweep.yaml", data, models=["toy-xs"], arms=["textless"], budgets=[2.0e9],
                    eval={"benchmarks": ["swuggy"], "max_items": 6})

    run_case(Case("run-bad-benchmark-line", ["run", "{tmp}/sweep.yaml"], setup,
                  names=("benchmarks/swuggy.jsonl", "line 3", "1000000"), absent=("runs", "results.csv")), tmp_path)
