"""The README's main command, end to end, as a user runs it (the console script, a fresh folder)."""
import csv
import json
import subprocess

import pytest

from scaling.rundir import RESULT_COLUMNS


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(["scaling", "demo", "--quick", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[9/9] done" in proc.stdout  # one progress line per finished run: 3 text LMs + one wsd run per (arm, size)

    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert set(RESULT_COLUMNS) <= set(rows[0])
    by_arm = {a: [r for r in rows if r["arm"] == a] for a in ("interleaved", "textless")}
    for arm, arm_rows in by_arm.items():
        assert len({r["model"] for r in arm_rows}) >= 3 and len({r["budget"] for r in arm_rows}) >= 3, arm
        for r in arm_rows:
            assert r["status"] == "done"
            assert float(r["flops"]) == 6 * int(r["params"]) * int(r["tokens"])
            for m in ("swuggy", "sblimp", "ssc", "tsc"):
                assert 0.0 <= float(r[m]) <= 1.0
            assert 0.0 < float(r["epochs"]) <= 3.0  # each point says how often it repeated its data
    # more compute buys lower speech loss for the text-initialised arm
    budgets = sorted({float(r["budget"]) for r in by_arm["interleaved"]})
    best = {b: min(float(r["val_loss_speech"]) for r in by_arm["interleaved"] if float(r["budget"]) == b) for b in budgets}
    assert best[budgets[-1]] < best[budgets[0]]

    fits = json.loads((out / "fits.json").read_text())
    assert {"interleaved", "textless"} <= set(fits["arms"])
    for name in ("isoflop", "loss_vs_compute", "metrics_vs_compute"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0
        assert (out / "figures" / f"{name}.pdf").stat().st_size > 0
    # the demo fits with Cuervo & Marxer's speech Huber delta (scaling.demo.REPORT_HUBER_DELTA), not the CLI's 1e-3
    assert json.loads((out / "fits.json").read_text())["huber_delta"] == 0.03
    report = (out / "report.md").read_text()
    assert "figures/loss_vs_compute.png" in report
    most = max(float(r["epochs"]) for rows_ in by_arm.values() for r in rows_)
    assert "Data repetition:" in report and f" {most:.2f} |" in report  # the report states it

    # every run directory honours the contract; checkpoints load with the Auto classes alone
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = out / "runs" / by_arm["interleaved"][0]["run_id"]
    for f in ("spec.yaml", "state.json", "metrics.jsonl", "result.json", "model/config.json"):
        assert (run / f).is_file(), f
    tok = AutoTokenizer.from_pretrained(run / "model")
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    added = [t for t in tok.get_vocab() if t.startswith("<Un")] + ["<speech>", "<text>"]
    assert len(added) == 502 and all(t in tok.get_vocab() for t in added)
    assert model.get_input_embeddings().weight.shape[0] >= len(tok)

    # rerunning the finished sweep trains nothing and says so
    again = subprocess.run(["scaling", "run", str(out / "sweep.yaml")], capture_output=True, text=True)
    assert again.returncode == 0 and "nothing to train" in again.stdout


def _stages(tmp_path, **kw):
    """The subcommands `scaling demo` chains, recorded by a stand-in for the CLI."""
    from scaling.demo import run_demo

    calls = []
    rc = run_demo(tmp_path / "d", seed=0, command=lambda argv: calls.append(argv) or 0, **kw)
    assert rc == 0
    return {argv[0]: argv for argv in calls}


def test_demo_spreads_its_runs_over_one_single_threaded_worker_per_core(tmp_path):
    from sweeps.local import auto_workers, usable_cores, worker_envs

    assert [auto_workers(cores=c) for c in (1, 2, 16, 64)] == [1, 2, 8, 8]
    # the workers and their threads come from the same core count (the process's affinity), so `auto` never
    # oversubscribes: one thread each
    assert all(env["OMP_NUM_THREADS"] == str(max(1, usable_cores() // auto_workers()))
               for env in worker_envs(auto_workers(), gpus=0))
    stages = _stages(tmp_path, quick=True)
    run = stages["run"]
    assert run[run.index("--workers") + 1] == "auto"
    report = _stages(tmp_path, quick=False)["report"]  # the study's fits use the speech Huber delta too
    assert report[report.index("--huber-delta") + 1] == "0.03"
    run = _stages(tmp_path, quick=False, scale="gpu")["run"]
    assert run[run.index("--workers") + 1] == "1"
    run = _stages(tmp_path, quick=True, workers=3, no_cache=True)["run"]
    assert run[run.index("--workers") + 1] == "3" and "--no-cache" in run
