"""The user cache of text LMs (trainer.runcache): a second sweep in another folder copies the finished
text LM instead of training it; a damaged entry is retrained; SPEECH_SCALING_CACHE and --no-cache."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import write_sweep
from scaling.cli import main
from scaling.flops import count_params, flops_6nd
from scaling.rundir import RunDir
from scaling.spec import TEXT_ARM
from sweeps.grid import resolve
from sweeps.local import run_sweep
from sweeps.schema import load_sweep
from trainer import runcache


@pytest.fixture(scope="module")
def golden(prepared, tmp_path_factory):
    """A cache holding the text LM of ``_sweep``, trained once (sweep folder ``a``) for the module."""
    base = tmp_path_factory.mktemp("golden")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(runcache.ENV, str(base / "cache"))
        sw, specs = _sweep(prepared, base / "a")
        lm, run = _text_lm(sw, specs)
        assert run_sweep(sw, [lm], echo=lambda *_: None)["failed"] == 0
    return base / "cache", lm, run


@pytest.fixture
def cache(golden, tmp_path, monkeypatch):
    """This test's cache: a copy of the golden one."""
    root = tmp_path / "cache"
    shutil.copytree(golden[0], root)
    monkeypatch.setenv(runcache.ENV, str(root))
    return root


@pytest.fixture
def trained(monkeypatch):
    """The arms of the runs that reached the training loop, in order."""
    import trainer.loop

    real, arms = trainer.loop.train_run, []

    def spy(run, *a, **k):
        arms.append(run.spec().arm)
        return real(run, *a, **k)

    monkeypatch.setattr(trainer.loop, "train_run", spy)
    return arms


def _sweep(prepared, folder):
    """One size, one budget, the interleaved arm: its text LM and one speech run."""
    path = write_sweep(folder / "sweep.yaml", prepared, models=["toy-xs"], budgets=[2.0e9], arms=["interleaved"])
    sw = load_sweep(path)
    return sw, resolve(sw)


def _text_lm(sw, specs):
    lm = next(s for s in specs if s.arm == TEXT_ARM)
    return lm, RunDir(sw.runs_dir / lm.run_id)


def _model_bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_second_sweep_in_another_folder_reuses_the_cached_text_lm(prepared, tmp_path, golden, cache, trained):
    _, lm, run_a = golden  # trained by a sweep in another folder, which stored it
    entry = cache / TEXT_ARM / lm.run_id
    assert runcache.check_entry(entry, lm.run_id) is None
    index = json.loads((entry / runcache.INDEX).read_text())
    assert index["run_id"] == lm.run_id and any(f.startswith("model/") for f in index["files"])
    assert _model_bytes(entry / "model") == _model_bytes(run_a.model_path)

    trained.clear()
    sw_b, specs_b = _sweep(prepared, tmp_path / "b")
    assert sw_b.runs_dir != run_a.path.parent and _text_lm(sw_b, specs_b)[0].run_id == lm.run_id
    lines = []
    assert run_sweep(sw_b, specs_b, echo=lines.append)["failed"] == 0
    _, run_b = _text_lm(sw_b, specs_b)
    assert trained == ["interleaved"]  # no training step of the text LM: only the speech run trained
    assert run_b.state()["cached_from"] == str(entry) and run_b.status == "done"
    assert _model_bytes(run_b.model_path) == _model_bytes(entry / "model") == _model_bytes(run_a.model_path)
    assert run_b.result() == run_a.result()
    # the speech run started from the copied text LM and states its compute, not counted in its budget
    speech = next(s for s in specs_b if s.arm == "interleaved")
    rec = RunDir(sw_b.runs_dir / speech.run_id).result()
    n_lm = count_params(lm.shape).total
    assert rec["init_compute"] == {"run_id": lm.run_id, "tokens": run_a.result()["tokens"],
                                   "flops": flops_6nd(n_lm, run_a.result()["tokens"]), "counted_in_budget": False}
    assert rec["flops"] == flops_6nd(count_params(speech.shape).total, rec["tokens"])


@pytest.mark.parametrize("damage", ["flip a byte", "other spec"])
def test_a_damaged_cache_entry_is_retrained_and_replaced(prepared, tmp_path, golden, cache, trained, damage):
    lm = golden[1]
    entry = cache / TEXT_ARM / lm.run_id
    weights = next((entry / "model").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    if damage == "flip a byte":
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    else:  # an entry whose spec is not the one asked for (its content gives another run id)
        spec = (entry / "spec.yaml").read_text().replace(f"tokens: {lm.tokens}", f"tokens: {lm.tokens * 2}")
        (entry / "spec.yaml").write_text(spec)
    assert runcache.check_entry(entry, lm.run_id) is not None

    trained.clear()
    sw_b, _ = _sweep(prepared, tmp_path / "b")
    lines = []
    assert run_sweep(sw_b, [lm], echo=lines.append)["failed"] == 0
    assert trained == [TEXT_ARM]
    assert "cached_from" not in RunDir(sw_b.runs_dir / lm.run_id).state()
    assert runcache.check_entry(entry, lm.run_id) is None  # stored again, sound
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]  # no temp or trash folder left


def test_cache_root_default_and_env_override(tmp_path, monkeypatch):
    monkeypatch.delenv(runcache.ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert runcache.cache_root() == tmp_path / "home" / ".cache" / "speech-scaling"
    monkeypatch.setenv(runcache.ENV, str(tmp_path / "elsewhere"))
    assert runcache.cache_root() == tmp_path / "elsewhere"
    for off in ("off", "0", ""):
        monkeypatch.setenv(runcache.ENV, off)
        assert runcache.cache_root() is None


def test_env_override_decides_where_a_sweep_looks_and_stores(prepared, tmp_path, golden, monkeypatch, trained):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(runcache.ENV, str(golden[0]))
    sw, specs = _sweep(prepared, tmp_path / "b")
    lm, run = _text_lm(sw, specs)
    run_sweep(sw, [lm], echo=lambda *_: None)
    assert trained == [] and run.state()["cached_from"] == str(golden[0] / TEXT_ARM / lm.run_id)
    assert not (tmp_path / "home").exists()  # the default root was never looked at


def test_no_cache_trains_and_stores_nothing(prepared, tmp_path, golden, cache, trained):
    lm = golden[1]
    entry = cache / TEXT_ARM / lm.run_id
    before = _model_bytes(entry)
    trained.clear()
    sweep_b = write_sweep(tmp_path / "b" / "sweep.yaml", prepared, models=["toy-xs"], budgets=[2.0e9],
                          arms=["interleaved"])
    assert main(["run", str(sweep_b), "--no-cache"]) == 0
    assert trained == [TEXT_ARM, "interleaved"]  # a valid entry was there, and not used
    assert _model_bytes(entry) == before  # and nothing stored over it
    assert [p.name for p in (cache / TEXT_ARM).iterdir()] == [lm.run_id]


def test_concurrent_writers_leave_one_sound_entry(golden, tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    _, lm, run = golden
    root = tmp_path / "fresh"
    monkeypatch.setenv(runcache.ENV, str(root))
    with ThreadPoolExecutor(4) as pool:
        stored = list(pool.map(lambda _: runcache.store(run, lm), range(8)))
    entry = root / TEXT_ARM / lm.run_id
    assert all(p in (None, entry) for p in stored) and entry in stored
    assert runcache.check_entry(entry, lm.run_id) is None
    assert [p.name for p in (root / TEXT_ARM).iterdir()] == [lm.run_id]  # no temp or trash folder left
    inode = (entry / runcache.INDEX).stat().st_ino
    assert runcache.store(run, lm) is None and (entry / runcache.INDEX).stat().st_ino == inode  # a sound entry stays
