"""`scaling fit` and the isoFLOP estimators: the --isoflop-method choices and their flags, and the
summary table of --law all on a text-only table (no speech benchmark columns, long arm names)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main as scaling_main


G = (0.34 * 400 / (0.28 * 1500)) ** (1 / 0.62)


def text_table(arms=("short", "a_very_long_arm_name_here"), seed=0, budgets=(1e18, 1e19, 1e20), noise=0.002):
    """A text-only results table (arm, params, tokens, budget, loss): no speech benchmark columns."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, arm in enumerate(arms):
        for C in budgets:
            n_star = G * (C / 6) ** (0.28 / 0.62)  # the law's compute-optimal size
            for N in n_star * np.geomspace(1 / 4, 4, 5):
                D = C / (6 * N)
                loss = (1.7 + 0.1 * k + 400 / N ** 0.34 + 1500 / D ** 0.28) * np.exp(rng.normal(0, noise))
                rows.append(dict(run_id=f"{arm}-{C:.0e}-{N:.2e}", arm=arm, params=N, tokens=D, budget=C, loss=loss,
                                 status="done"))
    return pd.DataFrame(rows)


def run_cli(argv, capsys):
    code = scaling_main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_law_all_on_a_text_only_table_prints_no_benchmark_it_does_not_have(tmp_path, capsys):
    p = tmp_path / "t.csv"
    text_table().to_csv(p, index=False)
    code, out, err = run_cli(["fit", p, "--law", "all"], capsys)
    assert code == 0, err
    pair = [line for line in out.splitlines() if " vs " in line]
    assert len(pair) == 1 and "frontier loss" in pair[0]
    for bench in ("swuggy", "sblimp", "ssc", "tsc", "n/a"):
        assert bench not in pair[0], pair[0]
    # the comparison in fits.json holds no entry for the columns the table lacks
    out_json = tmp_path / "fits.json"
    code, _, err = run_cli(["fit", p, "--law", "all", "--json", out_json], capsys)
    assert code == 0, err
    assert json.loads(out_json.read_text())["compare"]["pairs"][0]["metrics"] == {}


def test_a_benchmark_column_the_table_has_is_still_compared(tmp_path, capsys):
    df = text_table(arms=("interleaved", "textless")).assign(ssc=0.6, ssc_n=1000)
    p = tmp_path / "t.csv"
    df.to_csv(p, index=False)
    code, out, err = run_cli(["fit", p, "--law", "all"], capsys)
    assert code == 0, err
    pair = next(line for line in out.splitlines() if " vs " in line)
    assert "ssc " in pair and "swuggy" not in pair


def _ends(line: str) -> list[int]:
    """Where each whitespace-separated cell of ``line`` after the first ends."""
    cells = line.split()
    pos, out = len(cells[0]), []
    for c in cells[1:]:
        pos = line.index(c, pos) + len(c)
        out.append(pos)
    return out


@pytest.mark.parametrize("long_name", ["a_very_long_arm_name_here", "x" * 13])
def test_summary_columns_line_up_with_an_arm_name_longer_than_12(tmp_path, capsys, long_name):
    p = tmp_path / "t.csv"
    text_table(arms=("short", long_name)).to_csv(p, index=False)
    code, out, err = run_cli(["fit", p, "--law", "all"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    h = next(i for i, line in enumerate(lines) if line.split()[:2] == ["arm", "runs"])
    header, rows = lines[h], [line for line in lines[h + 2:h + 4]]
    assert {r.split()[0] for r in rows} == {"short", long_name}
    # every value ends where its column's name ends (right-aligned numbers), in both rows
    for r in rows:
        assert _ends(r) == _ends(header), (header, r)


def test_isoflop_method_flags_reach_the_fit(tmp_path, capsys):
    p = tmp_path / "t.csv"
    text_table(arms=("a",)).drop(columns="arm").to_csv(p, index=False)
    code, out, err = run_cli(["fit", p, "--law", "isoflop", "--isoflop-method", "window", "--isoflop-window", "3",
                              "--isoflop-min-sizes", "4", "--json", tmp_path / "w.json"], capsys)
    assert code == 0, err
    assert "isoFLOP fit (window)" in out and "within a factor 3.0" in out and "at least 4" in out
    assert json.loads((tmp_path / "w.json").read_text())["options"] == {"window": 3.0, "min_sizes": 4}
    code, out, err = run_cli(["fit", p, "--law", "isoflop", "--isoflop-method", "interp", "--isoflop-noise", "0.004"],
                             capsys)
    assert code == 0, err
    assert "isoFLOP fit (interp)" in out and "seed noise 0.004, given" in out and "Porian" in out
    code, out, err = run_cli(["fit", p, "--law", "isoflop", "--isoflop-method", "window", "--isoflop-window", "1"],
                             capsys)
    assert code == 2 and "window" in err and "Traceback" not in err
