"""Arms as data: any number of named arms (init, streams, data folder, family) in one sweep, and
the plan-time checks a careless or hostile sweep file meets (names, benchmarks, field types,
budgets that round to one token count, unreadable or unwritable files)."""
import json
import shutil

import pytest
import yaml

from conftest import write_sweep
from scaling.cli import main
from scaling.initref import InitRef
from sweeps.grid import resolve
from sweeps.schema import load_sweep

FOUR_ARMS = {
    "interleaved": None,  # the preset: text-LM init, text + interleaved + speech in equal shares
    "textless": None,  # the preset: random init, speech only
    "interleaved_nosynth": {"init": "text_lm", "streams": {"text": 1, "interleaved": 1, "speech": 1},
                            "data": "data_nosynth"},
    "llama": {"init": "text_lm", "family": "llama", "streams": {"text": 1, "interleaved": 1, "speech": 1}},
}


@pytest.fixture
def nosynth(prepared, tmp_path):
    """A second data folder for the arm without synthetic data (here a copy: same content)."""
    shutil.copytree(prepared, tmp_path / "data_nosynth")
    return tmp_path / "data_nosynth"


def _no_output(base):
    return not (base / "runs").exists() and not (base / "results.csv").exists()


def test_four_arms_plan(prepared, nosynth, tmp_path):
    sw = load_sweep(write_sweep(tmp_path / "sweep.yaml", prepared, models=["toy-xs"], arms=FOUR_ARMS))
    specs = resolve(sw)
    by_arm = {}
    for s in specs:
        by_arm.setdefault(s.arm, []).append(s)
    assert sorted(by_arm) == ["interleaved", "interleaved_nosynth", "llama", "textless", "textlm"]
    assert all(len(by_arm[a]) == 2 for a in FOUR_ARMS)  # two budgets each
    # the llama arm: its own family in every shape, and its own text LM (of that family)
    lm_ids = {s.run_id: s for s in by_arm["textlm"]}
    assert len(lm_ids) == 2
    for s in by_arm["llama"]:
        assert s.shape.family == "llama" and s.shape.qkv_bias is False
        lm = lm_ids[InitRef.parse(s.init).run_id]
        assert lm.shape.family == "llama"
    for s in by_arm["interleaved"]:
        assert s.shape.family == "qwen2" and lm_ids[InitRef.parse(s.init).run_id].shape.family == "qwen2"
    # the nosynth arm reads its own data folder
    assert {s.data_dir for s in by_arm["interleaved_nosynth"]} == {str(nosynth.resolve())}
    assert {s.data_dir for s in by_arm["interleaved"]} == {str(prepared.resolve())}
    assert all(s.streams == {"speech": 1.0} and s.init == "random" for s in by_arm["textless"])
    # text LMs come before the runs that start from them
    order = [s.run_id for s in specs]
    for s in specs:
        dep = InitRef.parse(s.init).run_id
        if dep:
            assert order.index(dep) < order.index(s.run_id)


@pytest.mark.slow
def test_four_arms_run_and_the_report_compares_them(prepared, nosynth, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "sweep.yaml", prepared, models=["toy-xs"], arms=FOUR_ARMS)
    assert main(["run", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "trained 10" in out and "failed 0" in out  # 4 arms x 2 budgets + 2 text LMs (qwen2 and llama family)
    rows = (tmp_path / "results.csv").read_text().splitlines()
    arms = {r.split(",")[1] for r in rows[1:]}
    assert arms == {"interleaved", "textless", "interleaved_nosynth", "llama", "textlm"}
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "report"), "--bootstrap", "0"]) == 0
    fits = json.loads((tmp_path / "report" / "fits.json").read_text())
    assert sorted(fits["arms"]) == ["interleaved", "interleaved_nosynth", "llama", "textless"]
    report = (tmp_path / "report" / "report.md").read_text()
    for arm in FOUR_ARMS:
        assert arm in report


def _refused_at_plan_time(sweep, base, capsys, field, words):
    """`plan` and `run` both exit 2 naming the sweep file, the field and the reason, and write nothing."""
    for cmd in (["plan", str(sweep)], ["run", str(sweep)]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert str(sweep) in err and f"'{field}'" in err and words in err, err
    assert _no_output(base)


@pytest.mark.parametrize("arms,field,words", [
    ({"../x": {"init": "random", "streams": {"speech": 1}}}, "arms.../x", "plain name"),
    ({"a/b": {"init": "random", "streams": {"speech": 1}}}, "arms.a/b", "plain name"),
    (["interleaved", ".."], "arms[1]", "plain name"),
    ({"textlm": {"init": "random", "streams": {"speech": 1}}}, "arms.textlm", "reserved"),
    ({"mine": {"init": "random"}}, "arms.mine.streams", "is required"),
    ({"mine": {"init": "random", "streams": {"audio": 1}}}, "arms.mine.streams.audio", "unknown stream"),
    ({"mine": {"init": "text_lm", "streams": {"speech": 1}, "family": "opt"}}, "arms.mine.family", "unknown model family"),
    ({"mine": {"init": "text_lm", "streams": {"speech": 1}, "data": "nowhere"}}, "arms.mine.data", "no prepared data"),
    ({"mine": {"init": "run:x", "streams": {"speech": 1}}}, "arms.mine.init", "must be 'text_lm'"),
])
def test_bad_arms_refused_at_plan_time(prepared, tmp_path, capsys, arms, field, words):
    _refused_at_plan_time(write_sweep(tmp_path / "sweep.yaml", prepared, arms=arms), tmp_path, capsys, field, words)


def test_inline_model_named_like_a_path_is_refused(prepared, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "out" / "sweep.yaml", prepared,
                        models=[{"name": "../../x", "hidden_size": 64, "num_layers": 2}], arms=["textless"])
    assert main(["run", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "'models[0].name'" in err and "plain name" in err, err
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob("*/runs")) and not (tmp_path / "out" / "runs").exists()


def test_registry_refuses_a_run_folder_outside_runs(tmp_path):
    from scaling.errors import ConfigError
    from sweeps.registry import Registry

    reg = Registry(tmp_path / "runs")
    for bad in ("../x", "a/../../y", "..", "/etc"):
        with pytest.raises(ConfigError, match="outside"):
            reg.run(bad)
    assert reg.run("textless-toy-xs-abc").path == tmp_path / "runs" / "textless-toy-xs-abc"


@pytest.mark.parametrize("override,field,words", [
    ({"eval": {"benchmarks": ["swuggy", "sglue"]}}, "eval.benchmarks", "unknown benchmark"),
    ({"eval": {"benchmarks": "swuggy"}}, "eval.benchmarks", "must be a list"),
    ({"eval": {"benchmarks": ["swuggy", "genppl"]}}, "eval.benchmarks", "generation metric"),
    ({"eval": {"max_items": -3}}, "eval.max_items", "positive integer"),
    ({"train": {"seq_len": 64, "batch_size": 4, "micro_batch_size": "2"}}, "train.micro_batch_size", "an integer"),
    ({"train": {"seq_len": 64, "batch_size": 4, "beta1": 5}}, "train.beta1", "[0, 1)"),
    ({"train": {"seq_len": 64, "batch_size": 4, "doc_mask": "yes"}}, "train.doc_mask", "a bool"),
    ({"train": {"seq_len": 64, "batch_size": 4, "lr": "fast"}}, "train.lr", "a number"),
    ({"text_pretrain": {"tokens": 4096.5}}, "text_pretrain.tokens", "an integer"),
    ({"budgets": [2.0e9, 2.00001e9]}, "budgets[1]", "same"),
    ({"resources": {"default": {"gpus_per_node": "eight"}}}, "resources.default.gpus_per_node", "an integer"),
    ({"resources": {"toy-xl": {"nodes": 2}}}, "resources.toy-xl", "not in 'models'"),
])
def test_bad_fields_refused_at_plan_time(prepared, tmp_path, capsys, override, field, words):
    _refused_at_plan_time(write_sweep(tmp_path / "sweep.yaml", prepared, **override), tmp_path, capsys, field, words)


def test_benchmark_missing_from_the_data_folder_refused(prepared, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(prepared, data)
    (data / "benchmarks" / "ssc.jsonl").unlink()
    sweep = write_sweep(tmp_path / "sweep.yaml", data)
    assert main(["plan", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "'eval.benchmarks'" in err and "benchmarks/ssc.jsonl" in err


def test_non_utf8_sweep_file_is_a_clear_error(tmp_path, capsys):
    p = tmp_path / "sweep.yaml"
    p.write_bytes(b"name: caf\xe9\nmodels: [toy-xs]\n")
    assert main(["plan", str(p)]) == 2
    err = capsys.readouterr().err
    assert str(p) in err and "not UTF-8" in err


def test_output_that_is_a_file_is_a_clear_error(prepared, tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    sweep = write_sweep(tmp_path / "sweep.yaml", prepared, output="taken")
    assert main(["run", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "'output'" in err and "cannot write there" in err


def test_shipped_sims_ablation_sweeps_plan(capsys):
    from conftest import REPO

    for name, arms in (("sims_synthetic_share.yaml", 3), ("sims_text_lm_family.yaml", 3)):
        sw = load_sweep(REPO / "sweeps" / "configs" / name)
        specs = resolve(sw)
        assert len(sw.arms) == arms and {s.arm for s in specs} == set(sw.arms)
        assert main(["plan", str(REPO / "sweeps" / "configs" / name)]) == 0
    out = capsys.readouterr().out
    assert "llama-3.2" in out and "interleaved_nosynth" in out
