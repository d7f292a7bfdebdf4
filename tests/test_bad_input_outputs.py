"""Bad input, issue 28: output paths, inputs that are not UTF-8, and the fit options that were ignored or
ended inside a table cell (defect 7, and four of defect 11). One row per class, run as a user runs the
command (a subprocess, tests/helpers/bad_input.py): exit 2, the file / option / value named, no
traceback, nothing written or the file in the way unchanged.

Read-only folders: as root a mode-0555 folder is still writable, so the read-only rows then put the
output under a file instead (``ro`` is a file, ``--out ro/out``); the "not writable" branch itself is
checked in-process below with ``os.access`` refusing, whoever runs the tests.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from scaling.cli import main
from tests.helpers.bad_input import Case, run_case
from tests.helpers.tables import write_two_arm_csv

REPO = Path(__file__).resolve().parents[1]
FEATURES = REPO / "tests" / "data" / "slamkit_example" / "features.jsonl"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
SHARED: dict[str, Path] = {}  # tokenizer folders built once (the `shared` fixture)
BAD = b"\xff\xfe"  # never valid in UTF-8


# -- setups ------------------------------------------------------------------------------------------
def _table(tmp: Path) -> None:
    write_two_arm_csv(tmp / "results.csv")


def _in_the_way(tmp: Path) -> None:
    """``afile``: a file where the command is told to write a folder (or a path below it)."""
    (tmp / "afile").write_bytes(b"keep me\n")


def _read_only(tmp: Path) -> None:
    """``ro``: a folder nobody may write into (a file as root: ``ro/out`` then lies under a file)."""
    if AS_ROOT:
        (tmp / "ro").write_bytes(b"keep me\n")
    else:
        (tmp / "ro").mkdir()
        (tmp / "ro").chmod(0o555)


def _both(*fns):
    def setup(tmp: Path) -> None:
        for f in fns:
            f(tmp)
    return setup


def _bad_csv(tmp: Path) -> None:
    _table(tmp)
    lines = (tmp / "results.csv").read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"interleaved", b"interleav" + BAD, 1)
    (tmp / "results.csv").write_bytes(b"\n".join(lines))


def _bad_result_json(tmp: Path) -> None:
    for i, loss in enumerate((3.0, 2.9, 2.8)):
        run = tmp / "runs" / f"r{i}"
        run.mkdir(parents=True)
        rec = {"run_id": f"r{i}", "params": 1e6 * (i + 1), "tokens": 1e8, "loss": loss, "status": "done"}
        (run / "result.json").write_bytes(json.dumps(rec).encode().replace(b'"done"', b'"d' + BAD + b'ne"')
                                          if i == 1 else json.dumps(rec).encode())


def _bad_fits_json(tmp: Path) -> None:
    _table(tmp)
    (tmp / "fits.json").write_bytes(b'{"arms": {"x' + BAD + b'": {}}}')


def _bad_plan_json(tmp: Path) -> None:
    (tmp / "plan.json").write_bytes(b'[{"arm": "a' + BAD + b'", "params": 1e6, "tokens": 1e8}]')


def _tokenizer(tmp: Path) -> None:
    shutil.copytree(SHARED["tok"], tmp / "tok")


def _bad_text_txt(tmp: Path) -> None:
    _tokenizer(tmp)
    (tmp / "text.txt").write_bytes(b"the fox ran home\nthe fox " + BAD + b" ran\nthe end\n")


def _bad_text_jsonl(tmp: Path) -> None:
    _tokenizer(tmp)
    (tmp / "text.jsonl").write_bytes(b''.join(b'{"text": "the fox ran %d"}\n' % i for i in range(5))
                                     + b'{"text": "the fox ' + BAD + b'"}\n')


def _bad_features(tmp: Path) -> None:
    _tokenizer(tmp)
    lines = FEATURES.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"file_name"', b'"bad' + BAD + b'": 1, "file_name"', 1)
    (tmp / "features.jsonl").write_bytes(b"\n".join(lines))
    (tmp / "text.jsonl").write_bytes(b''.join(b'{"text": "the fox ran %d"}\n' % i for i in range(5)))


def _bad_gold(tmp: Path) -> None:
    shutil.copytree(SHARED["ckpt"], tmp / "ck")
    (tmp / "zs").mkdir()
    (tmp / "zs" / "units.jsonl").write_text('{"file_name": "a.wav", "units": [1, 2]}\n'
                                            '{"file_name": "b.wav", "units": [3]}\n', encoding="utf-8")
    (tmp / "zs" / "gold.csv").write_bytes(b"id,filename,correct\n1,a.wav,1\n1,b" + BAD + b".wav,0\n")


# -- the rows ----------------------------------------------------------------------------------------
AFILE, RO = ("{tmp}/afile", "{tmp}/ro/out")
PREP = ["data", "prepare", "--features", "{tmp}/features.jsonl", "--tokenizer", "{tmp}/tok"]
KEEP = ("afile",)
RO_KEEP = ("ro",) if AS_ROOT else ()

CASES = [
    # output paths: each command, checked before any work
    Case("fit --json a folder", ["fit", "results.csv", "--json", "{tmp}"], _table, names=("--json", "{tmp}", "folder")),
    Case("fit --json under a file", ["fit", "results.csv", "--json", AFILE + "/fits.json"], _both(_table, _in_the_way),
         names=("--json", "afile", "not a folder"), unchanged=KEEP),
    Case("figures --out a file", ["figures", "results.csv", "--out", AFILE], _both(_table, _in_the_way),
         names=("--out", "afile", "is a file"), absent=("report.md",), unchanged=KEEP),
    Case("figures --out read-only", ["figures", "results.csv", "--out", RO, "--report", "{tmp}/r.md"],
         _both(_table, _read_only), names=("--out", "ro"), absent=("r.md",), unchanged=RO_KEEP),
    Case("figures --report a folder", ["figures", "results.csv", "--out", "{tmp}/figs", "--report", "{tmp}"], _table,
         names=("--report", "folder"), absent=("figs",)),
    Case("report --out a file", ["report", "results.csv", "--out", AFILE, "--bootstrap", "0"],
         _both(_table, _in_the_way), names=("--out", "afile", "is a file"), unchanged=KEEP),
    Case("report --out read-only", ["report", "results.csv", "--out", RO, "--bootstrap", "0"], _both(_table, _read_only),
         names=("--out", "ro"), unchanged=RO_KEEP),
    Case("data synth --out a file", ["data", "synth", "--quick", "--out", AFILE], _in_the_way,
         names=("--out", "afile", "is a file"), unchanged=KEEP),
    Case("data synth --out read-only", ["data", "synth", "--quick", "--out", RO], _read_only, names=("--out", "ro"),
         unchanged=RO_KEEP),
    Case("data prepare --out a file", [*PREP, "--out", AFILE], _in_the_way, names=("--out", "afile", "is a file"),
         absent=(".afile.prepare",), unchanged=KEEP),
    Case("data prepare --out read-only", [*PREP, "--out", RO], _read_only, names=("--out", "ro"), unchanged=RO_KEEP),
    Case("data extract --out a folder", ["data", "extract", "{tmp}/audio", "--out", "{tmp}"], names=("--out", "folder")),
    Case("eval --json a folder", ["eval", "{tmp}/ck", "--json", "{tmp}"], names=("--json", "folder")),
    Case("eval --per-item a file", ["eval", "{tmp}/ck", "--per-item", AFILE], _in_the_way,
         names=("--per-item", "afile"), unchanged=KEEP),
    Case("generate --out a file", ["generate", "{tmp}/ck", "--prompts", "{tmp}/p.jsonl", "--out", AFILE], _in_the_way,
         names=("--out", "afile"), unchanged=KEEP),
    # inputs that are not UTF-8: the file, the line and the byte offset, nothing left behind
    Case("results.csv not UTF-8", ["fit", "results.csv", "--json", "{tmp}/f.json"], _bad_csv,
         names=("results.csv", "not UTF-8", "line 3", "offset"), absent=("f.json",)),
    Case("result.json not UTF-8", ["fit", "{tmp}", "--json", "{tmp}/f.json"], _bad_result_json,
         names=("r1/result.json", "not UTF-8"), absent=("f.json",)),
    Case("figures --fits not UTF-8", ["figures", "results.csv", "--fits", "{tmp}/fits.json", "--out", "{tmp}/figs"],
         _bad_fits_json, names=("fits.json", "--fits", "not UTF-8"), absent=("figs", "report.md")),
    Case("power plan not UTF-8", ["power", "{tmp}/plan.json", "--law", "E=1,A=100,B=100,alpha=0.3,beta=0.3",
                                  "--noise", "0.01"], _bad_plan_json, names=("plan.json", "not UTF-8", "line 1")),
    Case("data prepare text .txt not UTF-8", ["data", "prepare", "--features", str(FEATURES), "--text", "{tmp}/text.txt",
                                              "--tokenizer", "{tmp}/tok", "--out", "{tmp}/out"], _bad_text_txt,
         names=("text.txt", "not UTF-8", "line 2", "offset 25"), absent=("out", ".out.prepare")),
    Case("data prepare text .jsonl not UTF-8", ["data", "prepare", "--features", str(FEATURES), "--text",
                                                "{tmp}/text.jsonl", "--tokenizer", "{tmp}/tok", "--out", "{tmp}/out"],
         _bad_text_jsonl, names=("text.jsonl", "not UTF-8", "line 6"), absent=("out", ".out.prepare")),
    Case("data prepare features not UTF-8", [*PREP, "--text", "{tmp}/text.jsonl", "--out", "{tmp}/out"], _bad_features,
         names=("features.jsonl", "not UTF-8", "line 2"), absent=("out", ".out.prepare")),
    Case("eval gold.csv not UTF-8", ["eval", "{tmp}/ck", "--benchmarks", "zs", "--data", "{tmp}", "--json", "{tmp}/e.json"],
         _bad_gold, names=("gold.csv", "not UTF-8", "line 3"), absent=("e.json",)),
    # options that were ignored, or whose error ended in a table cell with exit 0
    Case("fit --metric nosuchcol", ["fit", "results.csv", "--metric", "nosuchcol", "--json", "{tmp}/f.json"], _table,
         names=("--metric", "'nosuchcol'", "results.csv", "val_loss_speech, ssc"), absent=("f.json",)),
    Case("fit --metric without --law envelope", ["fit", "results.csv", "--metric", "ssc"], _table,
         names=("--metric", "--law envelope")),
    Case("fit --huber-delta 0", ["fit", "results.csv", "--huber-delta", "0", "--json", "{tmp}/f.json"], _table,
         names=("--huber-delta", "'0'"), absent=("f.json",)),
    Case("fit --huber-delta nan", ["fit", "results.csv", "--huber-delta", "nan"], _table, names=("--huber-delta", "'nan'")),
    Case("report --huber-delta -1", ["report", "results.csv", "--out", "{tmp}/rep", "--huber-delta=-1"], _table,
         names=("--huber-delta", "'-1'"), absent=("rep",)),
    Case("fit --bootstrap 1", ["fit", "results.csv", "--bootstrap", "1"], _table, names=("--bootstrap", "'1'")),
    Case("fit --seed -1", ["fit", "results.csv", "--bootstrap", "4", "--seed=-1"], _table, names=("--seed", "'-1'")),
    Case("demo --out a file", ["demo", "--quick", "--out", AFILE], _in_the_way, names=("--out", "afile", "is a file"),
         unchanged=("afile",)),
    Case("train --json a folder", ["train", "{tmp}/nospec.yaml", "--json", "{tmp}"], names=("--json", "folder")),
    Case("memory --json a folder", ["memory", "--model", "qwen2.5-0.5b", "--json", "{tmp}"], names=("--json", "folder")),
    Case("bench throughput --json a folder", ["bench", "throughput", "--model", "toy-xs", "--seq", "32", "--json", "{tmp}"],
         names=("--json", "folder")),
    Case("bench gpu --json under a file", ["bench", "gpu", "--device", "cpu", "--tiny", "--matrix", "--json",
                                          AFILE + "/m.json"], _in_the_way, names=("--json", "afile"), unchanged=("afile",)),
    Case("data synth --vocab-size 5", ["data", "synth", "--quick", "--vocab-size", "5", "--out", "{tmp}/syn"],
         names=("--vocab-size", "258", "got 5"), absent=("syn",)),
    Case("data synth --vocab-size 5, corpus alphabet", ["data", "synth", "--quick", "--text-alphabet", "corpus",
                                                         "--vocab-size", "5", "--out", "{tmp}/syn"],
         names=("--vocab-size", "minimum of", "got 5"), absent=("syn",)),
]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A text tokenizer (data prepare's --tokenizer) and a checkpoint folder holding only a tokenizer with the
    speech tokens (eval reads the benchmarks before it loads a model)."""
    from trainer.data.tokenizer import add_speech_tokens, train_text_tokenizer

    root = tmp_path_factory.mktemp("shared")
    texts = [f"the fox number {i} ran home" for i in range(30)]
    tok = train_text_tokenizer(texts, vocab_size=270)
    tok.save_pretrained(str(root / "tok"))
    add_speech_tokens(tok, 8)
    tok.save_pretrained(str(root / "ckpt"))
    SHARED.update(tok=root / "tok", ckpt=root / "ckpt")
    yield root
    SHARED.clear()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused(case, tmp_path, shared):
    try:
        run_case(case, tmp_path)
    finally:
        if (tmp_path / "ro").is_dir():
            (tmp_path / "ro").chmod(0o755)  # so that pytest can clean up


# -- in-process: the not-writable branch, write errors, the fit table's points -------------------------
def test_a_folder_that_is_not_writable_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    from scaling import atomic

    write_two_arm_csv(tmp_path / "results.csv")
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(atomic.os, "access", lambda p, mode: Path(p) != ro and real(p, mode))
    for argv, flag in ((["report", tmp_path / "results.csv", "--out", ro, "--bootstrap", "0"], "--out"),
                       (["report", tmp_path / "results.csv", "--out", ro / "sub", "--bootstrap", "0"], "--out"),
                       (["fit", tmp_path / "results.csv", "--json", ro / "f.json"], "--json"),
                       (["data", "synth", "--out", ro / "data"], "--out")):
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err
        assert f"field '{flag}'" in err and "not writable" in err and str(ro) in err, err
    assert list(ro.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "ro"]


def test_a_write_error_names_the_file_and_exits_2(tmp_path, monkeypatch, capsys):
    from scaling import atomic

    write_two_arm_csv(tmp_path / "results.csv")
    out = tmp_path / "out" / "fits.json"

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), src)

    monkeypatch.setattr(atomic.os, "replace", full)
    assert main(["fit", str(tmp_path / "results.csv"), "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: {os.strerror(errno.ENOSPC)}: {out}" in err, err
    assert list(out.parent.iterdir()) == []  # the temporary file is gone too

    def bug(src, dst):  # an OSError that says nothing about the machine is a bug: its traceback stays
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    monkeypatch.setattr(atomic.os, "replace", bug)
    with pytest.raises(OSError):
        main(["fit", str(tmp_path / "results.csv"), "--json", str(out)])


def test_fit_table_points_are_the_points_fits_json_records(tmp_path, capsys):
    # write_two_arm_csv: 16 points per arm, one interleaved loss missing (dropped from the fits)
    write_two_arm_csv(tmp_path / "results.csv")
    assert main(["fit", str(tmp_path / "results.csv"), "--json", str(tmp_path / "fits.json")]) == 0
    out = capsys.readouterr().out
    fits = json.loads((tmp_path / "fits.json").read_text(encoding="utf-8"))
    printed = {m.group(1): (int(m.group(2)), int(m.group(3)))
               for m in re.finditer(r"^(interleaved|textless)\s+(\d+)\s+(\d+)\s", out, re.M)}
    assert set(printed) == {"interleaved", "textless"}, out
    for arm, (runs, points) in printed.items():
        e = fits["arms"][arm]
        assert runs == e["n_runs"]
        assert points == e["parametric"]["n_points"] == e["n_runs_with_loss"], (arm, points, e["parametric"]["n_points"])
    assert printed["interleaved"][1] == 15 and fits["arms"]["interleaved"]["dropped"]["count"] == 1


def test_prepare_corpus_refuses_a_vocabulary_below_the_corpus_alphabet(tmp_path):
    from scaling.datadir import MANIFEST
    from scaling.errors import ConfigError
    from trainer.data.prepare_synthetic import min_vocab_size, prepare_corpus
    from trainer.data.synthetic import SynthConfig, generate

    from conftest import TINY_SYNTH

    generate(SynthConfig(seed=0, **TINY_SYNTH), tmp_path)
    assert min_vocab_size("bytes") == 258 and min_vocab_size("corpus", ["ab a", "é"]) == 3 + 2 + 2
    with pytest.raises(ConfigError, match="minimum of") as exc:
        prepare_corpus(tmp_path, vocab_size=5, text_alphabet="corpus")
    assert exc.value.field == "--vocab-size" and exc.value.value == 5
    assert not (tmp_path / MANIFEST).exists() and not (tmp_path / "shards").exists()
