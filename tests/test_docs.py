"""The docs: generated reference pages match the code, every flag and sweep key has a help text, the site
builds with warnings as errors, and the how-to pages' marked commands run as written."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
HOWTO = DOCS / "how-to"
MARK = "<!-- test: run -->"


def _gen():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


GEN = _gen()


def test_generated_reference_pages_match_the_code():
    stale = [name for name, text in GEN.generate().items()
             if not (GEN.OUT / name).is_file() or (GEN.OUT / name).read_text(encoding="utf-8") != text]
    assert stale == [], f"out of date: {stale}; regenerate with `{GEN.REGENERATE}`"


def test_every_cli_flag_has_a_help_text():
    assert GEN.missing_cli_help() == [], "give these arguments a help= text (then run python docs/gen_reference.py)"


def test_every_sweep_key_has_a_meaning():
    assert GEN.missing_key_help() == [], ("add these keys to sweeps.schema.KEY_HELP / KEY_FORMS "
                                          "(then run python docs/gen_reference.py)")


def test_every_results_column_has_a_meaning():
    assert GEN.missing_column_help() == [], "add these columns to COLUMN_HELP in scaling/points.py"


def test_every_column_point_rows_writes_has_a_meaning(monkeypatch):
    # the rows the code writes, from a record with every field and a cooldown branch, not the column list alone
    from scaling import points
    from scaling.datadir import BENCHMARK_NAMES

    scores = {b: 0.5 for b in BENCHMARK_NAMES} | {f"{b}_n": 10 for b in BENCHMARK_NAMES}
    rec = {"run_id": "a-m-1e10-0123456789", "arm": "a", "model": "m", "params": 1000, "non_embedding_params": 800,
           "tokens": 4000, "flops": 2.4e7, "flops_exact": 3e7, "budget": 2.4e7, "val_loss_speech": 2.0,
           "val_loss_text": 3.0, "val_loss_interleaved": 2.5, "epochs": 1.0, "status": "done", **scores,
           "evals": [{"kind": "cooldown", "tokens": 2000, "budget": 1.2e7, "val_loss_speech": 2.2, **scores}]}
    rows = points.point_rows(rec)
    assert [r["kind"] for r in rows] == ["cooldown", "final"]
    written = {k for r in rows for k in r}
    assert written - set(points.COLUMN_HELP) == set()
    assert set(GEN.result_columns()) <= set(points.COLUMN_HELP)
    page = GEN.results_columns_page()
    for c in written:
        assert f"| `{c}` | {GEN._esc(points.COLUMN_HELP[c])} |" in page
    # and the check fails on a column without a meaning
    monkeypatch.setattr(points, "COLUMN_HELP", {k: v for k, v in points.COLUMN_HELP.items() if k != "epochs"})
    assert GEN.missing_column_help() == ["epochs: no entry in scaling.points.COLUMN_HELP"]


def test_the_help_checks_fail_on_a_flag_or_key_without_help(monkeypatch):
    # the checks themselves: a parser with an undocumented flag, a schema with an undocumented key
    import argparse

    p = argparse.ArgumentParser(prog="scaling")
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("new", help="a new command")
    c.add_argument("--documented", help="has one")
    c.add_argument("--bare")
    monkeypatch.setattr(GEN, "commands", lambda parser=None, path=(): [(("new",), c, "a new command")])
    assert GEN.missing_cli_help() == ["scaling new --bare"]

    from sweeps import schema
    monkeypatch.setattr(schema, "TOP_KEYS", schema.TOP_KEYS | {"brand_new"})
    missing = GEN.missing_key_help()
    assert "brand_new: no entry in sweeps.schema.KEY_HELP" in missing
    assert "brand_new: no (type, default) in sweeps.schema.KEY_FORMS" in missing


def test_the_cli_page_lists_every_command_and_flag():
    text = (GEN.OUT / "cli.md").read_text(encoding="utf-8")
    for path, parser, _ in GEN.commands():
        assert f"## scaling {' '.join(path)} " in text
        for a in GEN.arguments(parser):
            for flag in a.option_strings:
                assert f"`{flag}`" in text, (path, flag)


def test_measurement_records_render_the_newest_of_each(tmp_path):
    sys.path.insert(0, str(REPO))
    from benchmarks.record import read_records, write_record
    import datetime as dt

    mach = {"description": "test box", "cores": 1}
    old = write_record("speed", {"s": 2.0}, summary="2.0 s", command="x", out_dir=tmp_path,
                       when=dt.datetime(2026, 1, 1, 10), machine_info=mach, commit="abc")
    new = write_record("speed", {"s": 1.0}, summary="1.0 s", command="x", out_dir=tmp_path,
                       when=dt.datetime(2026, 2, 1, 10), machine_info=mach, commit="abc")
    same_day = write_record("speed", {"s": 0.5}, summary="0.5 s", command="x", out_dir=tmp_path,
                            when=dt.datetime(2026, 2, 1, 11), machine_info=mach, commit="abc")
    assert old.name == "2026-01-01_speed.json" and same_day.name == "2026-02-01_speed_2.json" and new.exists()
    rec = json.loads(same_day.read_text())
    assert rec["figures"] == {"s": 0.5} and rec["date"] == "2026-02-01" and rec["machine"] == mach
    assert len(read_records(tmp_path)) == 3
    page = GEN.measurements_page(tmp_path)
    assert "| 0.5 s | 2026-02-01 | test box |" in page and "2.0 s" not in page and "1.0 s" not in page
    with pytest.raises(ValueError):
        write_record("../escape", {}, out_dir=tmp_path)


def test_the_measurements_page_says_whether_the_fast_recipe_ran_on_a_gpu(tmp_path):
    sys.path.insert(0, str(REPO))
    from benchmarks.record import write_record
    import datetime as dt

    cpu = {"description": "a laptop", "gpu": None}
    write_record("matrix_cpu", {"s": 19}, summary="19 s", command="scaling bench gpu --matrix --device cpu --tiny",
                 out_dir=tmp_path, when=dt.datetime(2026, 1, 1), machine_info=cpu, commit="abc")
    page = GEN.measurements_page(tmp_path)
    assert "has not been measured on a GPU yet" in page and "`2026-01-01_matrix_cpu.json`" in page
    write_record("matrix_h100", {"mfu": 0.5}, summary="0.5B 50% MFU", command="scaling bench gpu --matrix",
                 out_dir=tmp_path, when=dt.datetime(2026, 2, 1), machine_info={"gpu": ["NVIDIA H100"]}, commit="abc")
    page = GEN.measurements_page(tmp_path)
    assert "has not been measured" not in page
    assert "last measured on a GPU on 2026-02-01: 0.5B 50% MFU" in page


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 200
    fence = lines.index("```bash")
    cmds = lines[fence + 1:fence + 3]
    assert cmds[0].startswith("python -m pip install torch==2.13.0") and "scaling demo --quick" in cmds[0]
    assert cmds[1].endswith("python -m pytest -q -n auto")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert cmds[1] in ci.splitlines(), ".ci/run must run the README's test command exactly"


def test_mkdocs_build_strict(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(REPO / "mkdocs.yml"),
                           "-d", str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()


def _nav_howtos() -> list[Path]:
    text = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    return [DOCS / m for m in re.findall(r"(how-to/[\w-]+\.md)", text) if not m.endswith("index.md")]


def marked_blocks(text: str) -> list[str]:
    """The ```bash blocks that directly follow a ``<!-- test: run -->`` line."""
    return re.findall(r"^" + re.escape(MARK) + r"\n```bash\n(.*?)^```", text, flags=re.M | re.S)


def test_marked_blocks_are_found():
    page = f"text\n{MARK}\n```bash\necho one\n```\n\n```bash\necho two\n```\n"
    assert marked_blocks(page) == ["echo one\n"]


def test_every_howto_page_is_in_the_nav_and_has_tested_commands():
    pages = _nav_howtos()
    assert sorted(p.name for p in pages) == sorted(p.name for p in HOWTO.glob("*.md") if p.name != "index.md")
    assert [p.name for p in pages if not marked_blocks(p.read_text(encoding="utf-8"))] == []


def test_pages_that_train_share_one_toy_sweep():
    # the how-to test stays fast only if every page writes the same tiny.yaml (its run trains once)
    sweeps = {p.name: m for p in _nav_howtos() for block in marked_blocks(p.read_text(encoding="utf-8"))
              for m in re.findall(r"cat > tiny\.yaml <<'YAML'\n(.*?)^YAML$", block, flags=re.M | re.S)}
    assert len(sweeps) >= 2 and len(set(sweeps.values())) == 1, sweeps


def test_howto_commands_run_as_written(tmp_path):
    """Every marked block of every how-to page, in nav order, in one fresh folder that holds what a checkout
    does (sweeps/configs, Epoch's points)."""
    work = tmp_path / "work"
    shutil.copytree(REPO / "sweeps" / "configs", work / "sweeps" / "configs")
    (work / "tests" / "data").mkdir(parents=True)
    shutil.copy(REPO / "tests" / "data" / "chinchilla_epoch.csv", work / "tests" / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPEECH_SCALING_CACHE": str(tmp_path / "cache")}
    for page in _nav_howtos():
        for block in marked_blocks(page.read_text(encoding="utf-8")):
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, capture_output=True, text=True,
                                  timeout=300, env=env)
            assert proc.returncode == 0, (f"{page.relative_to(REPO)}: exit {proc.returncode}\n{block}\n"
                                          f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
