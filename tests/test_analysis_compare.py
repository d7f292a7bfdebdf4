"""The comparison of arms (fits.json "compare", the report's "Arms compared"): synthetic tables
drawn from known laws, one arm clearly better or both the same."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.report import write_report
from analysis.fits.synthetic import Law
from analysis.study import fit_study

BETTER = dict(E=1.6, A=300.0, B=900.0, alpha=0.33, beta=0.30)
WORSE = dict(E=1.9, A=300.0, B=900.0, alpha=0.33, beta=0.30)  # +0.3 nats everywhere
BUDGETS = (1e18, 1e19, 1e20)
ITEMS = 2000


def law_table(laws: dict, acc: dict, seed: int = 0, noise: float = 0.004) -> pd.DataFrame:
    """An isoFLOP grid per arm from ``laws`` (5 sizes around the true N_opt per budget), ssc accuracy
    drawn as Binomial(ITEMS, acc[arm]) / ITEMS with its item count."""
    rng = np.random.default_rng(seed)
    rows = []
    for arm, p in laws.items():
        law = Law(**p)
        for C in BUDGETS:
            for N in law.n_opt(C) * np.geomspace(1 / 4, 4, 5):
                D = C / (6 * N)
                loss = law.loss(N, D) * np.exp(rng.normal(0, noise))
                rows.append(dict(run_id=f"{arm}-{C:.0e}-{N:.2e}", arm=arm, params=N, tokens=D, flops=6 * N * D, budget=C,
                                 val_loss_speech=loss, ssc=rng.binomial(ITEMS, acc[arm]) / ITEMS, ssc_n=ITEMS,
                                 swuggy=0.7, status="done"))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def clear():
    df = law_table({"interleaved": BETTER, "textless": WORSE}, {"interleaved": 0.62, "textless": 0.52})
    return df, fit_study(df, metrics=["ssc", "swuggy"], bootstrap=40)


@pytest.fixture(scope="module")
def same():
    df = law_table({"interleaved": BETTER, "textless": BETTER}, {"interleaved": 0.55, "textless": 0.55}, seed=1)
    return df, fit_study(df, metrics=["ssc"], bootstrap=40)


def test_clearly_better_arm_is_lower_at_every_budget(clear):
    _, fits = clear
    cmp = fits["compare"]
    assert cmp["reference"] == "interleaved"
    (pair,) = cmp["pairs"]
    assert pair["arms"] == ["interleaved", "textless"]
    rows = pair["frontier"]["budgets"]
    assert [r["budget"] for r in rows] == list(BUDGETS)
    for r in rows:
        assert r["difference"] == pytest.approx(-0.3, abs=0.05)  # the laws differ by 0.3 in E
        assert r["ci"][0] <= r["difference"] <= r["ci"][1] < 0 and r["verdict"] == "lower"
    assert pair["frontier"]["verdict"] == "lower"
    ssc = pair["metrics"]["ssc"]
    assert ssc["budget"] == max(BUDGETS) and ssc["verdict"] == "higher" and ssc["better"] == "interleaved"
    assert 0 < ssc["ci"][0] < ssc["difference"] < ssc["ci"][1]
    assert ssc["ci"][1] - ssc["ci"][0] < 0.08  # 2,000 items: about +-3 points
    assert "binomial" in ssc["interval_method"]
    # no item counts for swuggy: a difference without an interval, and the reason
    sw = pair["metrics"]["swuggy"]
    assert sw["ci"] is None and sw["verdict"] == "no interval" and "swuggy_n" in sw["interval_method"]
    # same exponents (alpha, beta equal): a within each other's intervals
    x = pair["exponent"]
    assert x["intervals_overlap"] is True and x["verdict"] == "not distinguishable"
    for a, ci in zip(x["a"], x["ci"]):
        assert ci[0] <= a <= ci[1]


def test_identical_laws_are_not_distinguishable(same):
    _, fits = same
    (pair,) = fits["compare"]["pairs"]
    assert {r["verdict"] for r in pair["frontier"]["budgets"]} == {"not distinguishable"}
    for r in pair["frontier"]["budgets"]:
        assert r["ci"][0] < 0 < r["ci"][1]
    assert pair["metrics"]["ssc"]["verdict"] == "not distinguishable" and pair["metrics"]["ssc"]["better"] is None
    assert pair["exponent"]["intervals_overlap"] is True


def _section(text: str) -> str:
    return text.split("## Arms compared", 1)[1].split("\n## ", 1)[0]


def test_report_words_follow_the_numbers(clear, same, tmp_path):
    for name, (df, fits) in (("clear", clear), ("same", same)):
        out = write_report(df, fits, [], tmp_path / f"{name}.md")
        sec = _section(out.read_text())
        pair = fits["compare"]["pairs"][0]
        for r in pair["frontier"]["budgets"]:
            assert f"| {r['budget']:.3g} |" in sec and f"{r['ci'][0]:.3g}" in sec
        a0, a1 = pair["arms"]
        if name == "clear":
            assert f"**{a0}** reaches a lower val_loss_speech than {a1} at all 3 sampled budget(s)" in sec
            assert "- ssc: **interleaved** is better than textless" in sec
        else:
            assert "is not distinguishable at 95% at every sampled budget" in sec
            assert "- ssc: interleaved and textless are not distinguishable at 95%" in sec
            assert "reaches a lower" not in sec and "reaches a higher" not in sec and "is better than" not in sec
        assert "The two intervals overlap" in sec


def test_metrics_no_arm_evaluated_take_one_line(clear, tmp_path):
    """A benchmark column no arm filled (the results table has every registry column) is one line
    of the report, not one 'not compared' line per benchmark; one arm lacking it is still explained."""
    df, _ = clear
    df = df.assign(tsc=np.nan, genppl=np.nan, sblimp=np.where(df.arm == "textless", 0.6, np.nan))
    fits = fit_study(df, metrics=["ssc", "tsc", "genppl", "sblimp"], bootstrap=10)
    ms = fits["compare"]["pairs"][0]["metrics"]
    assert ms["tsc"].get("not_evaluated") and ms["genppl"].get("not_evaluated")
    assert "not_evaluated" not in ms["sblimp"] and "no sblimp value" in ms["sblimp"]["error"]
    sec = _section(write_report(df, fits, [], tmp_path / "r.md").read_text())
    assert "- Not evaluated by either arm: tsc, genppl." in sec
    assert "- sblimp: not compared (no sblimp value" in sec
    assert "tsc: not compared" not in sec and "genppl: not compared" not in sec
    assert "- ssc: **interleaved** is better than textless" in sec


def test_one_arm_has_no_comparison(clear, tmp_path):
    df, _ = clear
    one = df[df.arm == "interleaved"]
    fits = fit_study(one, metrics=["ssc"])
    assert "compare" not in fits
    assert "## Arms compared" not in write_report(one, fits, [], tmp_path / "r.md").read_text()


# ---------------------------------------------------------------- figures
def test_metric_figures_read_the_table(clear):
    from analysis.figures_metrics import binomial_halfwidth, draw_metric_isoflop, metric_optima
    from analysis.paperstyle import pyplot

    df, fits = clear
    assert binomial_halfwidth(0.5, 1000) == pytest.approx(1.959964 * 0.5 / np.sqrt(1000))
    assert np.isnan(binomial_halfwidth(0.5, np.nan))
    rows = df[df.arm == "textless"]
    opt = metric_optima(rows, "ssc", True)
    for c, n, d, v in opt:  # the best point of each budget: its N, D and value
        at = rows[rows.budget == c]
        best = at.loc[at["ssc"].idxmax()]
        assert (n, d, v) == (best["params"], best["tokens"], best["ssc"])
    plt = pyplot()
    fig = draw_metric_isoflop(plt, df, fits, "ssc")
    try:
        ax = fig.axes[0]  # interleaved: one error-bar series per budget, bars of the binomial half-width
        bars = [c for c in ax.collections if c.__class__.__name__ == "LineCollection"]
        assert len(bars) == len(BUDGETS)
        seg = bars[0].get_segments()[0]
        first = df[(df.arm == "interleaved") & (df.budget == BUDGETS[0])].sort_values("params").iloc[0]
        assert (seg[1][1] - seg[0][1]) / 2 == pytest.approx(binomial_halfwidth(first["ssc"], ITEMS))
    finally:
        plt.close(fig)


def test_loss_figures_draw_the_law_with_its_band(clear, tmp_path):
    from analysis.figures import draw_figures

    df, fits = clear
    paths = draw_figures(df, fits, tmp_path / "figs")
    names = {p.name for p in paths}
    for stem in ("isoflop", "loss_vs_compute", "isoflop_ssc", "metric_compute_optimal", "arms_compared"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    band = fits["arms"]["interleaved"]["parametric"]["bootstrap"]["isoflop_band"]
    assert [b["budget"] for b in band] == list(BUDGETS)
    for b in band:  # the law's band brackets the law along each budget's curve
        from analysis.fits.parametric import ParametricFit

        par = ParametricFit.from_dict(fits["arms"]["interleaved"]["parametric"])
        ns = np.array(b["N"])
        law = par.predict(ns, b["budget"] / (6 * ns))
        assert np.all(np.array(b["lo"]) <= law + 1e-9) and np.all(law <= np.array(b["hi"]) + 1e-9)
    report = write_report(df, fits, paths, tmp_path / "figs" / "report.md").read_text()
    cmp = _section(report)
    assert "[arms_compared](arms_compared.png)" in cmp and "[isoflop_ssc](isoflop_ssc.png)" in cmp


def test_arms_compared_figure_plots_the_computed_differences(clear):
    from analysis.figures_metrics import draw_arms_compared
    from analysis.paperstyle import pyplot

    df, fits = clear
    plt = pyplot()
    fig = draw_arms_compared(plt, df, fits)
    try:
        line = fig.axes[0].lines[0]
        rows = fits["compare"]["pairs"][0]["frontier"]["budgets"]
        assert list(line.get_xdata()) == [r["budget"] for r in rows]
        assert list(line.get_ydata()) == pytest.approx([r["difference"] for r in rows])
    finally:
        plt.close(fig)


def test_an_arm_without_a_frontier_is_undefined_not_compared(clear, tmp_path):
    """A degenerate law (non-positive exponent: the quick demo's 9 points can give alpha = -55) has no
    compute-optimal frontier: the comparison says 'undefined' (not 'not distinguishable' from the
    resamples that had one), the report says which arm, and the figure is drawn without it."""
    import copy
    import dataclasses

    from analysis.compare import _frontier
    from analysis.figures_metrics import draw_arms_compared
    from analysis.fits.parametric import ParametricFit
    from analysis.paperstyle import pyplot

    df, fits = clear
    p0 = ParametricFit.from_dict(fits["arms"]["interleaved"]["parametric"])
    p1 = dataclasses.replace(ParametricFit.from_dict(fits["arms"]["textless"]["parametric"]), alpha=-1.0)
    fr = _frontier(p0, p1, None, None, list(BUDGETS), 0.95, np.random.default_rng(0))
    assert fr["verdict"] == "undefined" and all(r["verdict"] == "undefined" for r in fr["budgets"])
    bad = copy.deepcopy(fits)
    bad["compare"]["pairs"][0]["frontier"] = fr
    sec = _section(write_report(df, bad, [], tmp_path / "r.md").read_text())
    assert "the law of textless has no compute-optimal frontier" in sec and "not distinguishable at 95% at every" not in sec
    plt = pyplot()
    fig = draw_arms_compared(plt, df, bad)  # drew nothing on a log axis before: matplotlib raised in tight_layout
    try:
        fig.savefig(tmp_path / "a.png")
        assert not fig.axes[0].lines[1:] and "no compute-optimal frontier" in fig.axes[0].texts[0].get_text()
    finally:
        plt.close(fig)


def test_report_says_why_two_arms_were_not_compared():
    from analysis.report_compare import compare_section

    fits = {"arms": {"interleaved": {}, "textless": {}}, "compare": {"error": "1 arm(s) with a parametric law: nothing to compare"}}
    lines = compare_section(fits)
    assert lines[0] == "## Arms compared" and "Not compared: 1 arm(s) with a parametric law" in "\n".join(lines)
    assert compare_section({"arms": {"all": {}}, "compare": {"error": "one arm"}}) == []  # a single-arm study has no section
