"""The one results-table loader (analysis.load.load_table: numpy columns, no pandas) against pandas:
``scaling fit`` (a Table) and report/figures (its ``to_pandas()``) must read and fit alike."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.load import load_results, load_table
from analysis.study import drop_top, fit_study
from analysis.table import Table
from scaling.errors import ConfigError
from tests.conftest import EPOCH_CSV
from tests.helpers.tables import write_two_arm_csv


def test_scaling_fits_from_a_table_equal_those_from_its_dataframe(tmp_path):
    # scaling fit fits a Table, report/figures used to fit the DataFrame: the same study either way,
    # comparison of arms (bootstrap samples, binomial intervals from ssc_n) and --drop-top included.
    p = tmp_path / "results.csv"
    write_two_arm_csv(p)
    table, df = load_table(p), load_results(p)
    assert isinstance(table, Table) and isinstance(df, pd.DataFrame)
    kw = {"metrics": ["ssc", "swuggy"], "bootstrap": 20, "require_fit": True}
    a = fit_study(table, **kw)
    assert "pairs" in a["compare"] and a["arms"]["interleaved"]["dropped"]["count"] == 1
    assert json.dumps(a, sort_keys=True) == json.dumps(fit_study(df, **kw), sort_keys=True)
    t2, d2 = drop_top(table, "val_loss_speech", 2), drop_top(df, "val_loss_speech", 2)
    assert list(t2["point_id"]) == list(d2["point_id"]) and len(t2) == 2 * (16 - 2)
    kw = {**kw, "bootstrap": 0, "extrapolation": False}
    assert json.dumps(fit_study(t2, **kw), sort_keys=True) == json.dumps(fit_study(d2, **kw), sort_keys=True)


def test_drop_top_keeps_pandas_order_on_ties():
    # Epoch's losses hold ties; the rows' order is the order of the fit's sums, so it must stay
    # pandas' sort_values(na_position="first") order, which the published figures were fitted in.
    raw = pd.read_csv(EPOCH_CSV)
    assert raw["loss"].duplicated().any()
    want = raw.sort_values("loss", na_position="first").iloc[:-5].index
    got = drop_top(load_table(EPOCH_CSV), "loss", 5)
    assert list(got["point_id"]) == [f"row {i + 1}" for i in want]
    np.testing.assert_array_equal(got["loss"], raw["loss"].to_numpy()[want])
    assert got.attrs["source"] == str(EPOCH_CSV)


def test_loader_reads_columns_as_pandas_does(tmp_path):
    # Extra columns keep the types pandas' CSV reader gave them (the report and figures read them),
    # numeric columns parse as pd.to_numeric, missing-value tokens are NaN, a BOM and quotes are read.
    p = tmp_path / "r.csv"
    p.write_text("\ufeffrun_id,arm,params,tokens,loss,seed,lr,flag,note,ssc_n,status\n"
                 '"r,1", interleaved ,1e8,1e9,3.1,0,0.001,True,x,2000,done\n'
                 "r2,interleaved,2e8, 1e9 ,NA,1,,False,,2000,DONE\n"
                 "\n"
                 "r3,textless,1e8,2e9,nan,2,0.003,True,y,,done\n"
                 "r4,textless,3e8,1e9,-1,3,0.004,False,z,1000,failed\n", encoding="utf-8")
    got = load_results(p, only_done=False)
    raw = pd.read_csv(p)
    for c in ("seed", "lr", "flag", "note", "ssc_n"):
        pd.testing.assert_series_equal(got[c], raw[c], check_names=True)
    for c in ("params", "tokens", "loss"):
        np.testing.assert_array_equal(got[c].to_numpy(), pd.to_numeric(raw[c]).to_numpy())
    assert list(got["run_id"]) == ["r,1", "r2", "r3", "r4"] and list(got["arm"]) == ["interleaved"] * 2 + ["textless"] * 2
    assert list(load_table(p)["point_id"]) == ["r,1", "r2", "r3"]  # status compared stripped, lower case


def test_run_ids_that_look_like_numbers_stay_text(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("run_id,params,tokens,loss\n7,1e8,1e9,3\n8,2e8,1e9,2.9\n", encoding="utf-8")
    t = load_table(p)
    assert list(t["run_id"]) == ["7", "8"] and list(t["point_id"]) == ["7", "8"]


def test_trailing_commas_are_read_not_shifted(tmp_path):
    # pandas took a trailing comma on every row for an index column and shifted every value one
    # column to the left (params read as tokens); empty trailing fields are now just dropped.
    p = tmp_path / "r.csv"
    p.write_text("params,tokens,loss\n1e8,1e9,3,\n2e8,1e9,2.9,\n", encoding="utf-8")
    t = load_table(p)
    assert list(t["params"]) == [1e8, 2e8] and list(t["loss"]) == [3.0, 2.9]


@pytest.mark.parametrize("text, message", [
    ("params,tokens,loss\n1e8,1e9,3\n2e8,1e9,2.9,7\n", "line 3 has 4 fields, the header 3"),
    ("params,tokens,loss,loss\n1e8,1e9,3,3\n", "field 'loss': the column appears twice"),
    ("", "the file is empty"),
    ("params,tokens,loss\n1e8,1e9,3\n1_000,1e9,2\n", "field 'params': non-numeric value (row 2) (got '1_000')"),
    ("arm,params,tokens,loss\na,1e8,1e9,3\n,2e8,1e9,2\n", "field 'arm': empty arm (row 2)"),
])
def test_malformed_csv_is_a_config_error_naming_file_and_place(tmp_path, text, message):
    p = tmp_path / "r.csv"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_table(p)
    assert message in str(ei.value) and str(p) in str(ei.value)


def test_table_selects_rows_by_mask_or_position_only():
    t = Table({"a": np.array([1.0, 2.0, 3.0]), "b": np.array(["x", "y", "z"], dtype=object)}, {"source": "s"})
    sub = t[np.array([True, False, True])]
    assert list(sub["b"]) == ["x", "z"] and sub.attrs == {"source": "s"} and len(sub) == 2
    assert list(t.take([2, 0])["a"]) == [3.0, 1.0] and t.take([]).empty
    with pytest.raises(TypeError):
        t[np.array([0, 1])]  # positions go through take(), as in pandas
    df = t.to_pandas()
    assert list(df.columns) == ["a", "b"] and df.attrs["source"] == "s" and list(df["b"]) == ["x", "y", "z"]


def test_envelope_of_a_text_column_is_a_config_error(tmp_path, capsys):
    from scaling.cli import main

    p = tmp_path / "results.csv"
    write_two_arm_csv(p)
    text = p.read_text().replace("run_id,arm,", "run_id,model,arm,", 1)
    p.write_text("\n".join(ln if i == 0 else ln.replace(",", ",m-1,", 1) for i, ln in enumerate(text.splitlines())) + "\n")
    assert main(["fit", str(p), "--law", "envelope", "--metric", "model", "--higher-is-better"]) == 2
    err = capsys.readouterr().err
    assert "field 'model': the column does not hold numbers (got 'm-1')" in err and str(p) in err
