"""Bad input to `scaling fit / figures / report`: exit status 2, a message that names the problem,
and nothing written. Plus the conventions the commands announce (Chinchilla's data, no isoFLOP grid)
and the metric direction taken from the benchmark registry."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main as scaling_main

ROOT = Path(__file__).resolve().parents[1]
EPOCH_CSV = ROOT / "tests/data/chinchilla_epoch.csv"


def grid_table(seed=0, budgets=(1e18, 1e19, 1e20), sizes=5, noise=0.003) -> pd.DataFrame:
    """A small isoFLOP grid from a known law, one arm, with run ids."""
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        n_star = 0.3 * (C / 6) ** 0.5
        for N in n_star * np.geomspace(1 / 4, 4, sizes):
            D = C / (6 * N)
            loss = (1.7 + 400 / N ** 0.34 + 1500 / D ** 0.28) * np.exp(rng.normal(0, noise))
            rows.append(dict(run_id=f"r-{C:.0e}-{N:.2e}", params=N, tokens=D, budget=C, loss=loss, status="done"))
    return pd.DataFrame(rows)


def run_cli(argv, capsys):
    code = scaling_main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.mark.parametrize("command", ["fit", "figures", "report"])
@pytest.mark.parametrize("case", ["constant", "single_budget", "failed_only", "header_only", "all_bad_losses"])
def test_unfittable_tables_exit_2_and_write_nothing(tmp_path, capsys, command, case):
    df = grid_table()
    if case == "constant":
        df["loss"] = 3.0
    elif case == "single_budget":
        df = df[df.budget == 1e19]
    elif case == "failed_only":
        df["status"] = "failed"
        df["loss"] = np.nan
    elif case == "header_only":
        df = df.iloc[:0]
    elif case == "all_bad_losses":
        df["loss"] = np.where(np.arange(len(df)) % 2, -1.0, np.nan)
    csv = tmp_path / "results.csv"
    df.to_csv(csv, index=False)
    out = tmp_path / "out"
    if command == "fit":
        argv = ["fit", csv, "--json", out / "fits.json"]
    elif command == "figures":
        argv = ["figures", csv, "--out", out / "figs", "--report", out / "report.md"]
    else:
        argv = ["report", csv, "--out", out, "--bootstrap", "0"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2, err
    expected = {"constant": "same in all", "single_budget": "single budget", "failed_only": "no run has status 'done'",
                "header_only": "no rows", "all_bad_losses": "no runs with a finite, positive loss"}[case]
    assert expected in err and "Traceback" not in err
    assert _listing(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]  # no staging folder left behind


def test_law_all_exits_2_when_no_law_could_be_fitted(tmp_path, capsys):
    # two budgets of two sizes: fittable in principle, but too few points for the parametric law (5)
    # and too few sizes for an isoFLOP minimum (3)
    df = pd.DataFrame(dict(run_id=["a", "b", "c", "d"], params=[1e8, 2e8, 1e8, 2e8], tokens=[1e9, 5e8, 1e10, 5e9],
                           budget=[6e17, 6e17, 6e18, 6e18], loss=[3.2, 3.1, 2.9, 2.8], status="done"))
    csv = tmp_path / "r.csv"
    df.to_csv(csv, index=False)
    code, out, err = run_cli(["fit", csv, "--json", tmp_path / "f.json"], capsys)
    assert code == 2 and "no law could be fitted" in err
    assert "parametric" in err and "at least 5 points" in err and "isoflop" in err
    assert not (tmp_path / "f.json").exists()
    # one more budget of five sizes and the same command fits (and writes)
    df = pd.concat([df, grid_table(budgets=(1e19,))])
    df.to_csv(csv, index=False)
    code, out, err = run_cli(["fit", csv, "--json", tmp_path / "f.json"], capsys)
    assert code == 0, err
    assert "error" not in json.loads((tmp_path / "f.json").read_text())["arms"]["all"]["parametric"]


def test_bad_loss_rows_are_reported_with_count_and_run_ids(tmp_path, capsys):
    df = grid_table()
    df.loc[1, "loss"] = np.nan
    df.loc[4, "loss"] = np.inf
    df.loc[7, "loss"] = 0.0
    csv = tmp_path / "r.csv"
    df.to_csv(csv, index=False)
    code, out, err = run_cli(["fit", csv, "--json", tmp_path / "f.json"], capsys)
    assert code == 0, err
    assert "3 run(s) left out" in out and "1 missing (NaN), 1 infinite, 1 <= 0" in out
    for i in (1, 4, 7):
        assert df.run_id[i] in out
    fits = json.loads((tmp_path / "f.json").read_text())
    dropped = fits["arms"]["all"]["dropped"]
    assert dropped["count"] == 3 and set(dropped["runs"]) == {df.run_id[i] for i in (1, 4, 7)}
    assert fits["arms"]["all"]["parametric"]["n_points"] == len(df) - 3
    # the single-law path says the same
    code, out, _ = run_cli(["fit", csv, "--law", "parametric"], capsys)
    assert code == 0 and "3 run(s) left out" in out


def test_envelope_direction_comes_from_the_registry(tmp_path, capsys):
    df = grid_table()
    rng = np.random.default_rng(1)
    df["sblimp"] = 0.5 + 0.01 * np.log10(df.budget) + rng.uniform(0, 0.01, len(df))  # accuracy: higher is better
    df["genppl"] = 100 / np.log10(df.budget) + rng.uniform(0, 5, len(df))  # perplexity: lower is better
    df["mystery"] = rng.uniform(1, 2, len(df))
    csv = tmp_path / "r.csv"
    df.to_csv(csv, index=False)
    for col, pick in (("sblimp", max), ("genppl", min)):
        code, _, err = run_cli(["fit", csv, "--law", "envelope", "--metric", col, "--json", tmp_path / f"{col}.json"], capsys)
        assert code == 0, err
        env = json.loads((tmp_path / f"{col}.json").read_text())
        best = {c: pick(g[col]) for c, g in df.groupby("budget")}
        assert [q for _, q in env["points"]] == pytest.approx([best[c] for c in sorted(best)])
    code, _, err = run_cli(["fit", csv, "--law", "envelope", "--metric", "mystery"], capsys)
    assert code == 2 and "--higher-is-better" in err
    code, _, err = run_cli(["fit", csv, "--law", "envelope", "--metric", "mystery", "--lower-is-better",
                            "--json", tmp_path / "m.json"], capsys)
    assert code == 0, err
    env = json.loads((tmp_path / "m.json").read_text())
    assert [q for _, q in env["points"]] == pytest.approx([min(g.mystery) for _, g in sorted(df.groupby("budget"))])
    assert env["higher_is_better"] is False


def test_chinchilla_table_gets_a_note_and_drop_top(tmp_path, capsys):
    code, out, err = run_cli(["fit", EPOCH_CSV, "--law", "parametric", "--json", tmp_path / "a.json"], capsys)
    assert code == 0, err
    assert "looks like Chinchilla's points" in out and "--drop-top 5" in out
    assert json.loads((tmp_path / "a.json").read_text())["n_points"] == 245
    code, out, err = run_cli(["fit", EPOCH_CSV, "--law", "parametric", "--drop-top", "5", "--json", tmp_path / "b.json"],
                             capsys)
    assert code == 0 and "looks like" not in out and "5 highest-loss runs" in out
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["n_points"] == 240
    assert b["alpha"] == pytest.approx(0.347, abs=0.02) and b["beta"] == pytest.approx(0.367, abs=0.02)  # Epoch's refit


def test_table_off_an_isoflop_grid_gets_a_warning(tmp_path, capsys):
    rng = np.random.default_rng(2)
    N, D = 10 ** rng.uniform(7, 9, 30), 10 ** rng.uniform(8, 10, 30)
    L = 1.7 + 400 / N ** 0.34 + 1500 / D ** 0.28
    csv = tmp_path / "r.csv"
    pd.DataFrame(dict(params=N, tokens=D, loss=L)).to_csv(csv, index=False)
    code, out, err = run_cli(["fit", csv, "--law", "parametric"], capsys)
    assert code == 0, err
    assert "not on an isoFLOP grid" in out and "one point per budget" in out
    code, out, _ = run_cli(["fit", grid_csv(tmp_path), "--law", "parametric"], capsys)
    assert code == 0 and "not on an isoFLOP grid" not in out


def grid_csv(tmp_path):
    p = tmp_path / "grid.csv"
    grid_table().to_csv(p, index=False)
    return p


def test_fit_path_imports_nothing_heavy():
    """The analysis side of `scaling fit` (parsing, loading, fitting, printing) imports neither torch nor
    matplotlib; the whole command's wall time is measured by the README command."""
    code = ("import sys\nfrom analysis.cli import main\nrc = main(['fit', %r, '--law', 'all'])\n"
            "heavy = [m for m in ('torch', 'trainer', 'matplotlib', 'transformers') if m in sys.modules]\n"
            "print('HEAVY', heavy)\nsys.exit(rc)") % str(EPOCH_CSV)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout


# The interleaved arm of a quick demo (2026-11-30): 3 sizes x 3 budgets whose losses the law cannot pin
# down. The objective keeps falling as log A grows past what a float holds: a divergence, reported per arm.
DIVERGING = [(57632, 144384, 3.567176256472195), (57632, 289280, 2.4420806227831457),
             (57632, 578560, 2.1164205194063928), (100272, 82944, 4.362873154532575),
             (100272, 166400, 2.963659875002548), (100272, 332288, 2.1641280341599396),
             (213824, 38912, 4.67051399166259), (213824, 77824, 4.485509943355553),
             (213824, 155648, 3.113969159608407)]


def test_a_diverging_parametric_fit_is_an_error_not_a_crash(tmp_path, capsys):
    from analysis.fits.parametric import fit_parametric
    from scaling.errors import ConfigError

    N, D, L = (np.array(c, dtype=float) for c in zip(*DIVERGING))
    with pytest.raises(ConfigError, match="diverged"):
        fit_parametric(N, D, L)
    budgets = [5e10, 1e11, 2e11] * 3  # the grid's nominal budgets, size by size
    rows = [dict(run_id=f"r{i}", arm="interleaved", params=n, tokens=d, flops=6 * n * d, budget=c,
                 val_loss_speech=l, status="done") for i, ((n, d, l), c) in enumerate(zip(DIVERGING, budgets))]
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    out = tmp_path / "fits.json"
    # no law of this arm can be fitted (its isoFLOP curves have no interior minimum either): exit 2, named
    assert scaling_main(["fit", str(tmp_path / "results.csv"), "--law", "all", "--json", str(out)]) == 2
    assert "interleaved/parametric: the parametric fit diverged" in capsys.readouterr().err and not out.exists()


# The interleaved arm of the wsd quick demo (2026-11-30): the fit sends alpha to -897 while log A falls to
# -900, so A underflows to 0 (the bootstrap then crashed taking log A). A degenerate law, reported per arm.
DEGENERATE = [(57632, 115712, 3.661232825750163), (57632, 231424, 2.4643216665010397),
              (57632, 462848, 2.116997307605084), (100272, 66560, 4.249280398294806),
              (100272, 133120, 2.8233265537727292), (100272, 265728, 2.2725827689273483),
              (213824, 31232, 4.748647989669969), (213824, 62464, 4.688937292329175),
              (213824, 124928, 4.056812980636925)]


def test_a_degenerate_parametric_fit_is_an_error_not_a_crash():
    from analysis.fits.parametric import fit_parametric
    from analysis.study import fit_arm
    from scaling.errors import ConfigError

    N, D, L = (np.array(c, dtype=float) for c in zip(*DEGENERATE))
    with pytest.raises(ConfigError, match="degenerate"):
        fit_parametric(N, D, L)
    rows = pd.DataFrame([dict(run_id=f"r{i}", point_id=f"r{i}", arm="interleaved", params=n, tokens=d, flops=6 * n * d,
                              budget=6 * n * d, val_loss_speech=l, status="done") for i, (n, d, l) in enumerate(DEGENERATE)])
    # the study records the failure for this law (with the reason) and goes on with the others, bootstrap included
    out = fit_arm(rows, loss_col="val_loss_speech", metrics=[], huber_delta=1e-3, bootstrap=20, seed=0)
    assert "degenerate" in str(out["parametric"])


def test_law_all_prints_the_same_table_with_or_without_json(tmp_path, capsys):
    # Without --json, `scaling fit` leaves out the held-out checks (two more full parametric fits); with
    # --json, fits.json holds them and their lines follow the same table.
    csv = grid_csv(tmp_path)
    code, plain, err = run_cli(["fit", csv], capsys)
    assert code == 0, err
    code, with_json, err = run_cli(["fit", csv, "--json", tmp_path / "fits.json"], capsys)
    assert code == 0, err
    held = [ln for ln in with_json.splitlines() if ln.startswith("all held-out largest budget") or ln.startswith("all rollout")]
    assert len(held) == 2 and not any(ln in plain.splitlines() for ln in held)
    rest = [ln for ln in with_json.splitlines() if ln not in held]
    assert rest[:-1] == plain.splitlines() and rest[-1].startswith("wrote ")
    check = json.loads((tmp_path / "fits.json").read_text())["arms"]["all"]["extrapolation"]
    assert "error" not in check and check["held_out_budget"] == 1e20 and check["n_test"] == 5
