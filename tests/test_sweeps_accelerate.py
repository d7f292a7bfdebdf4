"""The accelerate launcher builds `accelerate launch ... -m scaling.cli train runs/<id>` per run as an
argument list; a stand-in `accelerate` on PATH runs the command without a GPU."""
import os
import stat
import sys

from conftest import REPO, write_sweep
from scaling.cli import main
from sweeps.grid import resolve
from sweeps.registry import Registry
from sweeps.schema import load_sweep

FAKE = """#!{python}
import subprocess, sys
args = sys.argv[1:]
open({log!r}, "a").write(repr(args) + "\\n")
assert args[0] == "launch"
i = args.index("-m")
sys.exit(subprocess.call([sys.executable] + args[i:]))
"""


def test_accelerate_launcher_one_command_per_run(prepared, tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    fake = bin_dir / "accelerate"
    fake.write_text(FAKE.format(python=sys.executable, log=str(log)))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    sweep = write_sweep(tmp_path / "sweep.yaml", prepared, models=["toy-xs"], arms=["textless"], budgets=[2e9])
    sw = load_sweep(sweep)
    specs = resolve(sw)
    assert main(["run", str(sweep), "--launcher", "accelerate", "--accelerate-args", "--num_processes 1"]) == 0
    calls = [eval(line) for line in log.read_text().splitlines()]
    assert calls == [["launch", "--num_processes", "1", "-m", "scaling.cli", "train", str(sw.runs_dir / specs[0].run_id)]]
    assert Registry(sw.runs_dir).is_done(specs[0].run_id)
    assert "trained 1" in capsys.readouterr().out
