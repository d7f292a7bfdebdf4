"""Loading, the study dict, figures, report and CLI on small synthetic tables."""
import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cli import add_figures_arguments, add_fit_arguments, run_figures, run_fit
from analysis.figures import draw_figures
from analysis.fits.envelope import EnvelopeFit
from analysis.fits.isoflop import IsoflopFit
from analysis.fits.parametric import ParametricFit
from analysis.fits.synthetic import Law
from analysis.load import load_results
from analysis.report import write_report
from analysis.study import fit_study
from scaling.errors import ConfigError

LAWS = {  # two arms with different known laws
    "interleaved": dict(E=1.6, A=300.0, B=900.0, alpha=0.33, beta=0.30),
    "textless": dict(E=1.8, A=250.0, B=1200.0, alpha=0.30, beta=0.28),
}
GAMMA = {"interleaved": 0.03, "textless": 0.015}
METRICS = ("swuggy", "sblimp", "ssc", "tsc", "ssc_s2t", "ssc_t2s", "ssc_t2t")


def synthetic_table(seed=0, budgets=(1e18, 3e18, 1e19, 3e19, 1e20)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for arm, p in LAWS.items():
        law = Law(**p)
        for C in budgets:
            for N in law.n_opt(C) * np.geomspace(1 / 4, 4, 5):
                D = C / (6 * N)
                loss = law.loss(N, D) * np.exp(rng.normal(0, 0.002))
                row = dict(run_id=f"{arm}-{C:.0e}-{N:.2e}", arm=arm, model=f"m{N:.1e}", params=N,
                           non_embedding_params=0.8 * N, tokens=D, flops=6 * N * D, flops_exact=6.6 * N * D,
                           budget=C, val_loss_speech=loss, val_loss_text=loss + 0.5, val_loss_interleaved=loss + 0.2,
                           status="done")
                for i, m in enumerate(METRICS):
                    row[m] = min(0.99, (0.3 + 0.02 * i) * (C / 1e17) ** GAMMA[arm] * (1 - rng.uniform(0, 0.05)))
                rows.append(row)
    rows[3]["ssc"] = np.nan
    rows.append(dict(rows[0], run_id="failed-1", status="failed", val_loss_speech=np.nan))
    rows.append(dict(run_id="textlm-1", arm="textlm", model="t", params=1e8, tokens=1e10, flops=6e18,
                     budget=np.nan, val_loss_text=3.0, status="done"))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    d = tmp_path_factory.mktemp("res")
    df = synthetic_table()
    df.to_csv(d / "results.csv", index=False)
    return d / "results.csv"


@pytest.fixture(scope="module")
def study(table):
    df = load_results(table)
    return df, fit_study(df)


# ---------------------------------------------------------------- loading
def test_load_csv_dir_filters_failed_and_fills_flops(table, tmp_path):
    df = load_results(table.parent)
    assert "failed-1" not in set(df.run_id) and "textlm-1" in set(df.run_id)
    raw = pd.read_csv(table).drop(columns=["flops"])
    raw.to_csv(tmp_path / "r.csv", index=False)
    d2 = load_results(tmp_path / "r.csv")
    np.testing.assert_allclose(d2["flops"], 6 * d2["params"] * d2["tokens"])


def test_load_missing_column_names_file_and_column(table, tmp_path):
    p = tmp_path / "nocol.csv"
    pd.read_csv(table).drop(columns=["tokens"]).to_csv(p, index=False)
    with pytest.raises(ConfigError, match="tokens") as ei:
        load_results(p)
    assert str(p) in str(ei.value)


def test_load_requires_a_loss_column(tmp_path):
    p = tmp_path / "noloss.csv"
    pd.DataFrame({"params": [1e8], "tokens": [1e9]}).to_csv(p, index=False)
    with pytest.raises(ConfigError, match="loss"):
        load_results(p)


def test_load_non_positive_params(table, tmp_path):
    p = tmp_path / "neg.csv"
    raw = pd.read_csv(table)
    raw.loc[2, "params"] = -5
    raw.to_csv(p, index=False)
    with pytest.raises(ConfigError, match="params") as ei:
        load_results(p)
    assert str(p) in str(ei.value) and "-5" in str(ei.value)


def test_load_non_numeric_value(table, tmp_path):
    p = tmp_path / "text.csv"
    raw = pd.read_csv(table)
    raw["sblimp"] = raw["sblimp"].astype(object)
    raw.loc[4, "sblimp"] = "oops"
    raw.to_csv(p, index=False)
    with pytest.raises(ConfigError, match="sblimp") as ei:
        load_results(p)
    assert "oops" in str(ei.value) and str(p) in str(ei.value)


def test_load_runs_directory(table, tmp_path):
    raw = pd.read_csv(table).head(6)
    for _, r in raw.iterrows():
        d = tmp_path / "runs" / r.run_id
        d.mkdir(parents=True)
        rec = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.to_dict().items()}
        (d / "result.json").write_text(json.dumps(rec))
    df = load_results(tmp_path)
    assert len(df) == 6 and set(df.run_id) == set(raw.run_id)
    np.testing.assert_allclose(np.sort(df.params), np.sort(raw.params))
    bad = tmp_path / "runs" / raw.run_id[0] / "result.json"
    rec = json.loads(bad.read_text())
    rec["tokens"] = "many"
    bad.write_text(json.dumps(rec))
    with pytest.raises(ConfigError, match="tokens") as ei:
        load_results(tmp_path)
    assert "result.json" in str(ei.value)


def test_load_missing_path(tmp_path):
    with pytest.raises(ConfigError):
        load_results(tmp_path / "nothing.csv")
    with pytest.raises(ConfigError, match="results.csv"):
        load_results(tmp_path)


# ---------------------------------------------------------------- study
def test_fit_study_two_arms_and_json_roundtrip(study):
    df, fits = study
    assert set(fits["arms"]) == {"interleaved", "textless"}  # textlm excluded
    fits2 = json.loads(json.dumps(fits))
    for arm, p in LAWS.items():
        e = fits2["arms"][arm]
        assert e["n_runs"] == 25
        par = ParametricFit.from_dict(e["parametric"])
        assert par == ParametricFit.from_dict(fits["arms"][arm]["parametric"])
        assert ParametricFit.from_dict(par.to_dict()) == par
        assert par.alpha == pytest.approx(p["alpha"], abs=0.05) and par.beta == pytest.approx(p["beta"], abs=0.05)
        iso = IsoflopFit.from_dict(e["isoflop"])
        assert iso.a == pytest.approx(p["beta"] / (p["alpha"] + p["beta"]), abs=0.05)
        assert EnvelopeFit.from_dict(e["loss_envelope"]).gamma < 0
        assert set(e["metric_envelopes"]) == set(METRICS)
        g = EnvelopeFit.from_dict(e["metric_envelopes"]["swuggy"]).gamma
        assert g == pytest.approx(GAMMA[arm], abs=0.01)


def test_fit_study_reports_missing_data_instead_of_crashing():
    df = synthetic_table()
    small = df[(df.arm == "interleaved") & (df.budget == 1e18)].head(3)
    small = pd.concat([small, df[df.arm == "textless"]])
    small = small.drop(columns=["tsc"])
    fits = fit_study(small)
    e = fits["arms"]["interleaved"]
    assert "error" in e["parametric"] and "5 points" in e["parametric"]["error"]
    assert "error" in e["isoflop"] and "two budgets" in e["isoflop"]["error"]
    assert "error" in e["metric_envelopes"]["tsc"]
    assert "error" not in fits["arms"]["textless"]["parametric"]
    json.dumps(fits)


# ---------------------------------------------------------------- figures and report
def test_figures_and_report(study, tmp_path):
    df, fits = study
    paths = draw_figures(df, fits, tmp_path / "figures")
    names = {(p.stem, p.suffix) for p in paths}
    for n in ("isoflop", "loss_vs_compute", "metrics_vs_compute"):
        for ext in (".png", ".pdf"):
            assert (n, ext) in names
            assert (tmp_path / "figures" / f"{n}{ext}").stat().st_size > 1000
    assert not list((tmp_path / "figures").glob("*.tmp"))
    rep = write_report(df, fits, paths, tmp_path / "report.md")
    text = rep.read_text()
    for n in ("isoflop", "loss_vs_compute", "metrics_vs_compute"):
        assert f"](figures/{n}.png)" in text
    for arm in ("interleaved", "textless"):
        par = ParametricFit.from_dict(fits["arms"][arm]["parametric"])
        assert f"{par.alpha:.4f}" in text and f"{par.beta:.4f}" in text and f"{par.a:.4f}" in text
        gam = fits["arms"][arm]["metric_envelopes"]["sblimp"]["gamma"]
        assert f"{gam:.4f}" in text
    # the derived sentence follows the data: the arm with the lower loss at 1e20 is named
    top = df[df.budget == 1e20].groupby("arm")["val_loss_speech"].min()
    assert f"**{top.idxmin()}** reaches the lowest" in text


def test_report_sentence_follows_the_data(study, tmp_path):
    df, fits = study
    flipped = df.copy()
    # make textless the better arm at the top budget: the sentence must change with it
    flipped.loc[(flipped.arm == "textless") & (flipped.budget == 1e20), "val_loss_speech"] = 0.5
    text = write_report(flipped, fits, [], tmp_path / "r.md").read_text()
    assert "**textless** reaches the lowest" in text


def test_report_states_data_repetition(study, tmp_path):
    df, fits = study
    text = write_report(df, fits, [], tmp_path / "r.md").read_text()
    assert "most epochs" not in text and "Data repetition" not in text  # a table without the column: nothing claimed
    rep = df.copy()
    rep["epochs"] = np.linspace(0.1, 0.9, len(rep))
    rep.loc[rep.index[-1], "epochs"] = 2.345
    worst = rep.iloc[-1]
    text = write_report(rep, fits, [], tmp_path / "r.md").read_text()
    assert "the most any point reads of one training stream is 2.35 epochs" in text
    assert f"(`{worst['point_id']}`), so some points repeat data" in text
    # each arm's row of the Runs table ends with its own most epochs
    for arm, rows in rep.groupby("arm"):
        line = next(ln for ln in text.splitlines() if ln.startswith((f"| {arm} |", f"| {arm} (")))
        assert line.endswith(f" {rows['epochs'].max():.2f} |")
    # runs that do not record it (older records) are not counted as repeating nothing
    rep.loc[rep.index[:3], "epochs"] = np.nan
    rep.loc[rep.index[-1], "epochs"] = 0.95
    text = write_report(rep, fits, [], tmp_path / "r.md").read_text()
    assert (f"the most any point (of the {len(rep) - 3} of {len(rep)} points whose runs record it) reads of one "
            "training stream is 0.95 epochs") in text
    assert "so no point repeats any of its data" in text


# ---------------------------------------------------------------- CLI
def _fit_args(argv):
    p = argparse.ArgumentParser()
    add_fit_arguments(p)
    return p.parse_args(argv)


def test_cli_fit_parametric_on_bare_csv(tmp_path, capsys):
    rng = np.random.default_rng(5)
    NN, DD = np.meshgrid(np.geomspace(1e7, 1e9, 6), np.geomspace(1e8, 1e10, 6))
    N, D = NN.ravel(), DD.ravel()
    L = (1.7 + 400 / N ** 0.34 + 1500 / D ** 0.28) * np.exp(rng.normal(0, 0.002, N.size))
    csv = tmp_path / "bare.csv"
    pd.DataFrame({"params": N, "tokens": D, "loss": L}).to_csv(csv, index=False)
    out = tmp_path / "fit.json"
    assert run_fit(_fit_args([str(csv), "--law", "parametric", "--json", str(out)])) == 0
    d = json.loads(out.read_text())
    for k in ("E", "A", "B", "alpha", "beta", "a", "b", "G", "objective", "n_points"):
        assert k in d
    assert d["n_points"] == 36 and d["alpha"] == pytest.approx(0.34, abs=0.03)
    assert "alpha" in capsys.readouterr().out


def test_cli_fit_all_and_figures(table, tmp_path, capsys):
    fits_json = tmp_path / "fits.json"
    assert run_fit(_fit_args([str(table), "--json", str(fits_json), "--arm", "interleaved"])) == 0
    fits = json.loads(fits_json.read_text())
    assert list(fits["arms"]) == ["interleaved"]
    assert "interleaved" in capsys.readouterr().out
    p = argparse.ArgumentParser()
    add_figures_arguments(p)
    args = p.parse_args([str(table), "--fits", str(fits_json), "--out", str(tmp_path / "out" / "figs")])
    assert run_figures(args) == 0
    assert (tmp_path / "out" / "report.md").is_file()
    assert (tmp_path / "out" / "figs" / "isoflop.pdf").is_file()
    with pytest.raises(ConfigError, match="arm"):
        run_fit(_fit_args([str(table), "--arm", "nope"]))


def test_cli_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, analysis.cli; heavy = [m for m in ('pandas', 'matplotlib', 'scipy', 'torch', 'trainer') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.stdout.strip() == "[]", out.stderr


def test_analysis_never_imports_torch_or_trainer():
    root = Path(__file__).resolve().parents[1] / "analysis"
    for f in root.rglob("*.py"):
        src = f.read_text()
        assert "import torch" not in src and "from trainer" not in src and "import trainer" not in src, f


# ---------------------------------------------------------------- run directories, report, tables
from analysis.cli import add_report_arguments, run_report  # noqa: E402
from analysis.curves import load_checkpoints, load_curves  # noqa: E402
from analysis.fits.curve_envelope import fit_curve_envelope  # noqa: E402
from analysis.fits.two_step import fit_sigmoid, fit_two_step  # noqa: E402
from analysis.paperstyle import compact_sci  # noqa: E402
from analysis.tables import latex_table, markdown_table  # noqa: E402


def write_run_dirs(root: Path, df: pd.DataFrame, n_steps: int = 12) -> Path:
    """Run directories as the trainer writes them: result.json (with evals) and metrics.jsonl."""
    for _, r in df.iterrows():
        d = root / "runs" / r.run_id
        d.mkdir(parents=True)
        rec = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.to_dict().items()}
        ev = {k: rec.get(k) for k in ("tokens", "flops", "val_loss_speech", "val_loss_text", *METRICS)}
        half = dict(ev, tokens=rec["tokens"] / 2, flops=rec["flops"] / 2,
                    val_loss_speech=(rec["val_loss_speech"] or 3.0) * 1.05)
        rec["evals"] = [half, ev]
        (d / "result.json").write_text(json.dumps(rec))
        lines = []
        for s in range(1, n_steps + 1):
            tok = rec["tokens"] * s / n_steps
            # a training curve whose final value is the run's loss; bigger models learn faster per token
            loss = (rec["val_loss_speech"] or 3.0) * (1 + 2.0 * (1 - s / n_steps) ** 2)
            lines.append(json.dumps({"step": s, "tokens": tok, "flops": 6 * rec["params"] * tok, "lr": 1e-3, "loss": loss}))
        lines.append(json.dumps({"step": n_steps, "tokens": rec["tokens"], "flops": rec["flops"],
                                 "val_loss_speech": rec["val_loss_speech"], "val_loss_text": rec.get("val_loss_text")}))
        (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    df = synthetic_table()
    df = df[df.arm != "textlm"]
    return write_run_dirs(tmp_path_factory.mktemp("sweep"), df)


def test_load_curves_and_checkpoints(sweep_dir):
    curves = load_curves(sweep_dir)
    assert set(curves["kind"]) == {"train", "val"} and "failed-1" not in set(curves.run_id)
    assert (curves[curves.kind == "val"]["val_loss_speech"].notna()).all()
    ck = load_checkpoints(sweep_dir)
    assert len(ck) == 2 * 50 and ck.groupby("run_id").size().eq(2).all()
    np.testing.assert_allclose(ck["flops_6nd"], 6 * ck["params"] * ck["tokens"])
    np.testing.assert_allclose(ck["flops_exact"], 6.6 * ck["params"] * ck["tokens"])  # the run's exact count, per token
    assert ck["final"].sum() == 50


def test_load_curves_skips_a_torn_last_line(sweep_dir, tmp_path):
    import shutil

    root = tmp_path / "s"
    shutil.copytree(sweep_dir, root)
    m = next(p for p in sorted((root / "runs").glob("*/metrics.jsonl"))
             if json.loads((p.parent / "result.json").read_text()).get("status") == "done")
    before = len(load_curves(root))
    m.write_text(m.read_text() + '{"step": 99, "loss": 1.')  # killed mid-write
    assert len(load_curves(root)) == before
    m.write_text('{"step": 1\n' + m.read_text())  # corruption in the middle is an error naming the file
    with pytest.raises(ConfigError, match="metrics.jsonl"):
        load_curves(root)
    with pytest.raises(ConfigError, match="runs"):
        load_curves(sweep_dir / "runs" / "nothing")


def test_curve_envelope_approach_1(sweep_dir):
    curves = load_curves(sweep_dir)
    il = curves[curves.arm == "interleaved"]
    fit = fit_curve_envelope(il, loss_col="loss", smooth=1, min_fraction=0.0)
    assert len(fit.points) > 5 and 0 < fit.a < 1.5
    # a middle envelope point is the lowest interpolated loss among the runs that reach its compute
    C, loss, N, D = fit.points[len(fit.points) // 2]
    best = np.inf
    for _, g in il[il.kind == "train"].groupby("run_id"):
        g = g.sort_values("flops")
        lf = np.log(g["flops"].to_numpy())
        if lf[0] <= np.log(C) <= lf[-1]:
            best = min(best, float(np.interp(np.log(C), lf, g["loss"].to_numpy())))
    assert loss == pytest.approx(best)
    assert fit.from_dict(json.loads(json.dumps(fit.to_dict()))) == fit
    with pytest.raises(ConfigError, match="lack column"):
        fit_curve_envelope(curves.drop(columns=["flops"]))


def test_two_step_sigmoid_prediction():
    L = np.linspace(2.0, 4.0, 30)
    acc = 0.5 + 0.4 / (1 + np.exp(3.0 * (L - 3.0)))
    s = fit_sigmoid(L, acc, floor=0.5)
    assert s.k == pytest.approx(3.0, rel=1e-3) and s.L0 == pytest.approx(3.0, abs=1e-3) and s.rmse < 1e-6
    rng = np.random.default_rng(0)
    N, D = 10 ** rng.uniform(7, 9, 40), 10 ** rng.uniform(8, 10, 40)
    loss = 1.7 + 400 / N ** 0.34 + 1500 / D ** 0.28
    metric = 0.5 + 0.4 / (1 + np.exp(3.0 * (loss - loss.mean())))
    two = fit_two_step(N, D, loss, metric, floor=0.5, grid=__import__("analysis.fits.parametric", fromlist=["x"]).default_grid()[::15])
    np.testing.assert_allclose(two.predict(N, D), metric, atol=0.01)
    with pytest.raises(ConfigError, match="points"):
        fit_sigmoid([2.0, 3.0], [0.6, 0.5])


def test_sigmoid_of_a_metric_at_chance_gives_up_within_its_evaluation_cap(monkeypatch):
    """A metric at chance identifies no sigmoid: the fit must say it did not converge, and stop within
    its 2,000-evaluation cap rather than search for 20,000 (~10 s a link in the quick demo)."""
    import analysis.fits.two_step as two_step

    calls = []
    real = two_step.sigmoid
    monkeypatch.setattr(two_step, "sigmoid", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(1)
    L = np.sort(rng.uniform(2, 3, 9))
    acc = 0.5 + rng.choice([-1, 1], 9) * rng.uniform(0, 0.04, 9)  # noise about chance
    with pytest.raises(ConfigError, match="did not converge"):
        fit_sigmoid(L, acc, floor=0.5)
    # it searched, and stopped at the cap: 2,000 steps, each with a 3-point finite-difference Jacobian
    assert 100 < len(calls) <= 2000 * (1 + 3)


def test_latex_and_markdown_tables_contain_coefficients(study):
    _, fits = study
    par = {arm: e["parametric"] for arm, e in fits["arms"].items()}
    par["broken"] = {"error": "no data"}
    tex = latex_table(par)
    assert tex.startswith(r"\begin{table}") and r"\toprule" in tex and "broken" not in tex
    md = markdown_table(par)
    for arm, d in par.items():
        if arm == "broken":
            continue
        p = ParametricFit.from_dict(d)
        for s in (f"{p.alpha:.3f}", f"{p.beta:.3f}", f"{p.A:.4g}", f"{p.E:.3f}", f"{p.a:.3f}"):
            assert s in tex and s in md
    assert tex.count(r"\\") >= 3


def test_compact_tick_labels():
    assert compact_sci(2e11) == "2e11" and compact_sci(1e10) == "1e10" and compact_sci(5e-3) == "5e-3"


def test_cli_fit_bootstrap_writes_ci(tmp_path):
    rng = np.random.default_rng(5)
    NN, DD = np.meshgrid(np.geomspace(1e7, 1e9, 5), np.geomspace(1e8, 1e10, 5))
    N, D = NN.ravel(), DD.ravel()
    L = (1.7 + 400 / N ** 0.34 + 1500 / D ** 0.28) * np.exp(rng.normal(0, 0.002, N.size))
    csv = tmp_path / "bare.csv"
    pd.DataFrame({"params": N, "tokens": D, "loss": L}).to_csv(csv, index=False)
    out = tmp_path / "fit.json"
    assert run_fit(_fit_args([str(csv), "--law", "parametric", "--bootstrap", "100", "--json", str(out)])) == 0
    d = json.loads(out.read_text())
    for k in ("E", "A", "B", "alpha", "beta", "a", "b", "G"):
        lo, hi = d["ci"][k]
        assert lo <= d[k] <= hi, k
    assert d["bootstrap"]["n_resamples"] == 100 and "diagnostics" in d


def test_isoflop_single_budget_table_gets_clear_error(tmp_path):
    csv = tmp_path / "one.csv"
    pd.DataFrame({"params": [1e7, 2e7, 4e7], "tokens": [4e9, 2e9, 1e9], "loss": [3.1, 3.0, 3.2]}).to_csv(csv, index=False)
    with pytest.raises(ConfigError, match="single budget"):
        run_fit(_fit_args([str(csv), "--law", "isoflop"]))


def test_scaling_report_writes_everything(sweep_dir, tmp_path, capsys):
    p = argparse.ArgumentParser()
    add_report_arguments(p)
    out = tmp_path / "rep"
    args = p.parse_args([str(sweep_dir), "--out", str(out), "--bootstrap", "50", "--reference", "cuervo_speech",
                         "--reference", "epoch"])
    assert run_report(args) == 0
    for name in ("isoflop", "loss_vs_compute", "metrics_vs_compute", "compute_optimal", "parametric_contours",
                 "training_curves"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{name}.{ext}").stat().st_size > 1000, name
    fits = json.loads((out / "fits.json").read_text())
    e = fits["arms"]["interleaved"]
    for key in ("parametric", "isoflop", "isoflop_powersum", "extrapolation", "curve_envelope", "two_step"):
        assert key in e and "error" not in e[key], (key, e.get(key))
    assert "ci" in e["parametric"] and "a" in e["parametric"]["ci"]
    tex = (out / "coefficients.tex").read_text()
    assert f"{e['parametric']['alpha']:.3f}" in tex
    rep = (out / "report.md").read_text()
    assert "Extrapolation check" in rep and "](figures/compute_optimal.png)" in rep and "published" in rep
    # the report says how the intervals were made and how the optimum was searched
    assert "50 resamples, resampling runs with replacement (pairs bootstrap)" in rep
    assert "refitted to its own optimum" in rep and "polished to convergence" in rep
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rep.partial-")]  # staging folder removed
    with pytest.raises(ConfigError, match="unknown reference"):
        run_report(p.parse_args([str(sweep_dir), "--out", str(out), "--reference", "nope"]))


def test_report_cautions_on_ill_conditioned_fit(tmp_path):
    df = synthetic_table()
    df = df[(df.arm == "interleaved") & df.budget.isin([1e18, 1e19, 1e20])]
    df = df.groupby("budget").head(3)  # 9 runs, as in the toy demo
    fits = fit_study(df, metrics=("swuggy",))
    p = ParametricFit.from_dict(fits["arms"]["interleaved"]["parametric"])
    assert any("only 9 points" in w for w in p.diagnostics())
    text = write_report(df, fits, [], tmp_path / "r.md").read_text()
    assert "CAUTION (interleaved)" in text
    # and it says how to check a wider grid first, with the scatter the simulation would assume
    assert "`scaling power plan.json --law fits.json` simulates it under this law and this fit's scatter " \
           f"({p.extra['log_residual_rms']:.3g} in log loss)" in text


def test_findings_leave_out_laws_without_optimum_and_call_ties_ties(study):
    import copy

    from analysis.report import findings

    df, fits = study[0], copy.deepcopy(study[1])
    arms = [a for a in fits["arms"] if "error" not in fits["arms"][a].get("parametric", {"error": 1})]
    assert len(arms) >= 2
    fits["arms"][arms[1]]["parametric"]["alpha"] = -0.5  # no compute-optimal point: G is NaN
    metric = next(m for m in fits["metrics"] if all("error" not in fits["arms"][a]["metric_envelopes"][m] for a in arms))
    for a in arms:
        fits["arms"][a]["metric_envelopes"][metric]["gamma"] = 0.0123
    text = "\n".join(findings(df, fits))
    assert f"The parametric law of {arms[1]} has no compute-optimal point" in text
    assert " nan" not in text
    assert f"{metric}: the envelopes of" in text and "grow equally fast" in text


def test_predicted_optimum_from_a_flagged_law_is_not_a_finding(study):
    """The compute-optimal loss comparison says when it rests on a law flagged ill-conditioned (the
    quick demo's alpha = 213 law predicted a loss of 0.03 and the sentence read as a result)."""
    import copy

    from analysis.report import findings

    df, fits = study[0], copy.deepcopy(study[1])
    arms = [a for a in fits["arms"] if "error" not in fits["arms"][a].get("parametric", {"error": 1})]
    sentence = "the compute-optimal loss predicted by the parametric laws"
    line = lambda f: next(t for t in findings(df, f) if sentence in t)  # noqa: E731
    assert all(not ParametricFit.from_dict(fits["arms"][a]["parametric"]).ill_conditioned for a in arms)
    assert "not evidence" not in line(fits)
    fits["arms"][arms[0]]["parametric"]["E"] = 1e-14  # pinned at 0: flagged
    assert ParametricFit.from_dict(fits["arms"][arms[0]]["parametric"]).ill_conditioned
    assert line(fits).endswith(f"The law of {arms[0]} is flagged above, so this is not evidence either way.")


def test_isoflop_report_rows_follow_the_budgets_with_skipped_ones_in_place():
    """A budget whose parabola opens downwards is reported in its place among the budgets, not last."""
    from analysis.fits.isoflop import fit_isoflop
    from analysis.report import _isoflop_section

    law = Law(E=1.7, A=400.0, B=410.0, alpha=0.34, beta=0.28)
    budget, params, tokens, loss = [], [], [], []
    for C in (1e18, 1e19, 1e20):
        n_opt = law.n_opt(C)
        for f in (1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8):
            n = n_opt * f
            d = C / (6 * n)
            budget.append(C), params.append(n), tokens.append(d)
            # the middle budget: a cap, so its parabola opens downwards (no interior minimum)
            loss.append(float(law.loss(n, d)) if C != 1e19 else 3.0 - 0.01 * np.log(f) ** 2)
    iso = fit_isoflop(np.array(budget), np.array(params), np.array(tokens), np.array(loss))
    assert list(iso.skipped) and float(list(iso.skipped)[0]) == 1e19
    lines = _isoflop_section({"arms": {"only": {"isoflop": iso.to_dict()}}})
    rows = [ln for ln in lines if ln.startswith("| 1e+")]
    assert [r.split(" | ")[0] for r in rows] == ["| 1e+18", "| 1e+19", "| 1e+20"]
    assert "skipped: parabola opens downwards" in rows[1]


def test_isoflop_figure_keeps_an_outside_vertex_off_the_axis(study):
    """A parabola whose vertex lies outside the sampled sizes (here moved to 1/100 of the smallest) is
    drawn dotted over the sampled sizes only, with no star: the axis stays near the data."""
    import copy

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.figures import _draw_isoflop

    df, fits = study
    fits = copy.deepcopy(fits)
    m = fits["arms"]["interleaved"]["isoflop"]["minima"][0]
    m["n_opt"] = m["n_min"] / 100
    fig = _draw_isoflop(plt, df, fits, "val_loss_speech")
    ax = fig.axes[0]
    assert ax.get_xlim()[0] > m["n_min"] / 2
    stars = [c for c in ax.collections if len(c.get_offsets()) == 1]
    assert all(c.get_offsets()[0][0] >= m["n_min"] for c in stars)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "parabola, vertex outside the sizes" in labels
    plt.close(fig)
