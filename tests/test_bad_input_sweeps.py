"""The bad-input suite, sweep side (issue 28): sweep files, spec.yaml, lease files and the options of
plan / status / run, each row run as a user runs it (a `python -m scaling.cli` subprocess, see
tests/helpers/bad_input.py): exit status 2, the file, field and value named on stderr, no traceback,
nothing written. Then the SLURM script-injection acceptance test (the dry-run's script run by bash with a
stub srun), the wait for a dead worker's lease said out loud, a corrupt lease taken over, and the loader's
own rules. Every command here is torch-free (plan, status, run --dry-run, train refusing its spec)."""
from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers.bad_input import Case, run_case

#: A sweep that plans without data (a speech-only arm on the unit vocabulary): one run, no torch.
BASE = """\
name: bad
output: out
tokenizer: units
models: [toy-xs]
arms: [textless]
budgets: [2.0e+9]
train: {seq_len: 64, batch_size: 4, lr: 3.0e-3, min_lr: 3.0e-4}
eval: {benchmarks: [swuggy]}
"""


def sweep(text: str = BASE, **replace):
    """setup(tmp): S.yaml from ``text`` with lines starting ``key:`` replaced by ``key: value``."""
    def setup(tmp: Path) -> None:
        out = text
        for key, value in replace.items():
            lines = out.splitlines(keepends=True)
            hit = [i for i, ln in enumerate(lines) if ln.startswith(f"{key}:")]
            if hit:
                lines[hit[0]] = f"{key}: {value}\n"
            else:
                lines.append(f"{key}: {value}\n")
            out = "".join(lines)
        (tmp / "S.yaml").write_text(out, encoding="utf-8")
    return setup


def raw_sweep(data: bytes):
    def setup(tmp: Path) -> None:
        (tmp / "S.yaml").write_bytes(data)
    return setup


def resources(**kw) -> str:
    return "{default: {" + ", ".join(f"{k}: {v}" for k, v in kw.items()) + "}}"


def _run_dir(tmp: Path) -> Path:
    from sweeps.grid import resolve
    from sweeps.schema import load_sweep

    (spec,) = resolve(load_sweep(tmp / "S.yaml"))
    return tmp / "out" / "runs" / spec.run_id


def corrupt_lease(data: bytes):
    """S.yaml, and its run's lease.1 holding ``data`` (written a moment ago: a fresh heartbeat)."""
    def setup(tmp: Path) -> None:
        sweep()(tmp)
        d = _run_dir(tmp)
        d.mkdir(parents=True)
        (d / "lease.1").write_bytes(data)
        (tmp / "lease_path").write_text(str(d / "lease.1"))
        (tmp / "lease_bytes").write_bytes(data)
    return setup


def spec_yaml(edit=None, data: bytes | None = None):
    """spec.yaml of the sweep's run, edited by ``edit(dict)`` or replaced by ``data``."""
    def setup(tmp: Path) -> None:
        from sweeps.grid import resolve
        from sweeps.schema import load_sweep

        sweep()(tmp)
        d = resolve(load_sweep(tmp / "S.yaml"))[0].dump()
        d["data_dir"] = str(tmp / "data")
        if edit:
            edit(d)
        (tmp / "spec.yaml").write_bytes(data if data is not None else yaml.safe_dump(d, sort_keys=False).encode())
    return setup


def alias_bomb(levels: int = 6) -> str:
    """A name built from nested aliases: 9**levels strings once expanded (531,441 for 6: small enough that
    the code before the fix merely accepted it; 9 levels took 3 GB)."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


SLURM = ["run", "S.yaml", "--launcher", "slurm", "--dry-run"]
NOTHING = ("out", "plan.json", "PWNED")

CASES = [
    # 1. a newline in the name or a SLURM resource became a line of the sbatch script: refused at plan time
    Case("newline-in-name", SLURM, sweep(name='"x\\ntouch PWNED\\n#"'),
         names=("S.yaml", "'name'", "'x\\ntouch PWNED\\n#'"), absent=NOTHING),
    Case("newline-in-partition", SLURM, sweep(resources=resources(partition='"gpu\\ntouch PWNED"')),
         names=("S.yaml", "resources.default.partition", "'gpu\\ntouch PWNED'"), absent=NOTHING),
    Case("newline-in-account", SLURM, sweep(resources=resources(account='"a\\ntouch PWNED"')),
         names=("S.yaml", "resources.default.account", "'a\\ntouch PWNED'"), absent=NOTHING),
    Case("newline-in-qos", SLURM, sweep(resources=resources(qos='"q\\ntouch PWNED"')),
         names=("S.yaml", "resources.default.qos", "'q\\ntouch PWNED'"), absent=NOTHING),
    Case("newline-in-constraint", SLURM, sweep(resources=resources(constraint='"c\\ntouch PWNED"')),
         names=("S.yaml", "resources.default.constraint", "'c\\ntouch PWNED'"), absent=NOTHING),
    Case("carriage-return-in-output", SLURM, sweep(output='"out\\rtouch PWNED"'),
         names=("S.yaml", "'output'", "'out\\rtouch PWNED'"), absent=NOTHING),
    # 3. numbers parsed strictly: finite, in range
    Case("lr-1e400", ["plan", "S.yaml", "--json", "plan.json"], sweep(train="{seq_len: 64, batch_size: 4, lr: 1e400}"),
         names=("S.yaml", "train.lr", "inf"), absent=NOTHING),
    Case("int-beyond-float", ["plan", "S.yaml"], sweep(budgets="[1" + "0" * 400 + "]"),
         names=("S.yaml", "budgets[0]", "401 digits"), absent=NOTHING),
    Case("int-beyond-python", ["plan", "S.yaml"], sweep(seed="1" + "0" * 5000),
         names=("S.yaml", "not valid YAML"), absent=NOTHING),
    Case("seed-negative", ["plan", "S.yaml"], sweep(seed="-1"), names=("S.yaml", "'seed'", "-1"), absent=NOTHING),
    Case("mem-1e400", SLURM, sweep(resources=resources(mem_gb="1e400")),
         names=("S.yaml", "resources.default.mem_gb", "inf"), absent=NOTHING),
    Case("nodes-typo", SLURM, sweep(resources=resources(nodes="1000000000")),
         names=("S.yaml", "resources.default.nodes", "1000000000"), absent=NOTHING),
    # 11. a budget no run could ever finish
    Case("budget-1e300", ["plan", "S.yaml", "--json", "plan.json"], sweep(budgets="[1.0e+300]"),
         names=("S.yaml", "'tokens'", "1e+300", "1e+14"), absent=NOTHING),
    # 4. the registry's options
    Case("lease-timeout-nan", ["status", "S.yaml", "--lease-timeout", "nan"], sweep(),
         names=("--lease-timeout", "nan"), absent=NOTHING),
    Case("lease-timeout-inf", ["status", "S.yaml", "--lease-timeout", "inf"], sweep(),
         names=("--lease-timeout", "inf"), absent=NOTHING),
    Case("heartbeat-0", SLURM + ["--heartbeat", "0"], sweep(), names=("--heartbeat", "0.0"), absent=NOTHING),
    Case("heartbeat-negative", SLURM + ["--heartbeat", "-1"], sweep(), names=("--heartbeat", "-1.0"), absent=NOTHING),
    Case("mfu-nan", ["plan", "S.yaml", "--mfu", "nan"], sweep(), names=("--mfu", "nan"), absent=NOTHING),
    Case("plan-json-a-folder", ["plan", "S.yaml", "--json", "{tmp}"], sweep(), names=("--json", "{tmp}"),
         absent=NOTHING),
    Case("workers-not-ascii", ["run", "S.yaml", "--workers", "\u00b2"], sweep(), names=("--workers", "'\u00b2'"),
         absent=NOTHING),
    Case("accelerate-args-unbalanced", ["run", "S.yaml", "--launcher", "accelerate", "--accelerate-args", "'--x"],
         sweep(), names=("--accelerate-args", "'--x"), absent=NOTHING),
    # 10. the sweep's name, and the YAML loader
    Case("name-path", ["plan", "S.yaml"], sweep(name="../../etc"), names=("S.yaml", "'name'", "'../../etc'"),
         absent=NOTHING),
    Case("name-list", ["plan", "S.yaml"], sweep(name="[a, b]"), names=("S.yaml", "'name'", "['a', 'b']"),
         absent=NOTHING),
    Case("alias-bomb", SLURM, sweep(BASE.replace("name: bad\n", alias_bomb()), name="*l6"),
         names=("S.yaml", "alias", "100,000"), absent=NOTHING),
    Case("duplicate-key", ["plan", "S.yaml"], sweep(BASE + "budgets: [4.0e+9]\n"),
         names=("S.yaml", "'budgets'", "line 6", "line 9"), absent=NOTHING),
    Case("not-utf8", ["plan", "S.yaml"], raw_sweep(BASE.replace("arms: [textless]", "arms: [textl\u00e9ss]")
                                                   .encode("latin-1")),
         names=("S.yaml", "UTF-8", "0xe9", "line 5"), absent=NOTHING),
    Case("nested-too-deep", ["plan", "S.yaml"], sweep(name="[" * 3000 + "]" * 3000),
         names=("S.yaml", "too deeply"), absent=NOTHING),
    # spec.yaml, read by `scaling train` through RunSpec.load: the same loader and checks
    Case("spec-not-utf8", ["train", "spec.yaml"], spec_yaml(data=b"arm: textl\xe9ss\n"),
         names=("spec.yaml", "UTF-8", "0xe9"), absent=("runs",)),
    Case("spec-warmup-not-a-number", ["train", "spec.yaml"],
         spec_yaml(edit=lambda d: d["train"].update(warmup_frac="abc")),
         names=("spec.yaml", "train.warmup_frac", "'abc'"), absent=("runs",)),
    Case("spec-seed-beyond-32-bits", ["train", "spec.yaml"], spec_yaml(edit=lambda d: d.update(seed=2**40)),
         names=("spec.yaml", "'seed'", str(2**40)), absent=("runs",)),
    # 6. a corrupt lease: no traceback, no live holder, and the file named (status exits 0: the run is pending)
    Case("corrupt-lease-not-utf8", ["status", "S.yaml"], corrupt_lease(b"\xff\xfe{"), exit=0,
         names=("lease.1", "no live holder"), unchanged=()),
    Case("corrupt-lease-truncated", ["status", "S.yaml"], corrupt_lease(b'{"worker": "w", "pi'), exit=0,
         names=("lease.1", "no live holder"), unchanged=()),
    Case("corrupt-lease-a-list", ["status", "S.yaml"], corrupt_lease(b"[1, 2]"), exit=0,
         names=("lease.1", "no live holder"), unchanged=()),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path):
    proc = run_case(case, tmp_path)
    if case.id.startswith("corrupt-lease-"):
        lease = Path((tmp_path / "lease_path").read_text())
        assert str(lease) in proc.stderr  # named, and left as it was (the attempt history)
        assert lease.read_bytes() == (tmp_path / "lease_bytes").read_bytes()
        assert "pending: 1" in proc.stdout and "running: 0" in proc.stdout


# -- the acceptance test: the dry-run's sbatch script, run ------------------------------------------------
#: Values that a shell would execute if they reached the script unquoted (newlines are refused above).
HOSTILE = {
    "partition": "gpu$(touch injected-partition)",
    "account": "`touch injected-account`",
    "qos": "hi'; touch injected-qos; echo '",
    "constraint": 'a"b$(touch injected-constraint)"`touch injected-constraint2`',
}
HOSTILE_OUTPUT = "out-$(touch injected-output)-`touch injected-output2`-'q'\"dq\"; touch injected-output3"


def test_dry_run_script_runs_none_of_the_injected_commands(tmp_path):
    cfg = yaml.safe_load(BASE)
    cfg["output"] = HOSTILE_OUTPUT
    cfg["resources"] = {"default": dict(HOSTILE)}
    (tmp_path / "S.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "scaling.cli", *SLURM], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    start = lines.index("#!/bin/bash")
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("# each of"))
    script = tmp_path / "job.sh"
    script.write_text("\n".join(lines[start:end]) + "\n", encoding="utf-8")

    # sbatch reads each #SBATCH value as one shell word: every hostile value comes back intact
    flags = dict(shlex.split(ln[len("#SBATCH "):])[0][2:].split("=", 1) for ln in lines[start:end]
                 if ln.startswith("#SBATCH --") and "=" in ln)
    for key, value in HOSTILE.items():
        assert flags[key] == value, (key, flags[key])

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "srun"  # records its arguments, one per line (NUL-separated: a newline is data)
    stub.write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$SRUN_ARGS"\n', encoding="utf-8")
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SRUN_ARGS": str(tmp_path / "srun.args")}
    ran = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("injected")) == [], ran.stderr
    assert ran.returncode == 0, ran.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out-*"))  # nothing created by the script

    args = (tmp_path / "srun.args").read_text(encoding="utf-8").split("\0")[:-1]
    folder = (tmp_path / HOSTILE_OUTPUT).resolve() / "slurm" / "%j"
    assert args == ["--unbuffered", "--output", f"{folder}/%j_%t_log.out", sys.executable, "-u", "-m",
                    "submitit.core._submit", str(folder)]
    # the torchrun line, pasted into a shell, gets the run folder as one argument too
    (torchrun,) = [ln for ln in lines if ln.startswith("torchrun: ")]
    assert shlex.split(torchrun[len("torchrun: "):])[-1].startswith(str((tmp_path / HOSTILE_OUTPUT).resolve()))


# -- a dead worker's lease: the wait is said, once, with its end ------------------------------------------
def _units_sweep(tmp_path: Path):
    from sweeps.grid import resolve
    from sweeps.schema import load_sweep

    sweep()(tmp_path)
    sw = load_sweep(tmp_path / "S.yaml")
    return sw, resolve(sw)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_rerun_says_it_waits_for_a_dead_workers_lease(tmp_path):
    from sweeps.local import work
    from sweeps.registry import Registry

    sw, (spec,) = _units_sweep(tmp_path)
    reg = Registry(sw.runs_dir, lease_timeout=1.5, heartbeat=0.1, max_attempts=2)
    run = reg.run(spec.run_id)
    run.path.mkdir(parents=True)
    lease = run.path / "lease.1"  # a worker killed with -9 a moment ago: fresh heartbeat, process gone
    lease.write_text(json.dumps({"worker": "gone", "pid": _dead_pid(), "host": socket.gethostname(),
                                 "claimed_at": time.time()}))
    t0 = os.stat(lease).st_mtime
    lines, started = [], []

    def execute(rd):
        started.append(time.time())
        return {"arm": spec.arm, "tokens": spec.tokens, "val_loss_speech": 1.0}

    work(sw, [spec], reg, echo=lines.append, poll=0.05, execute=execute)
    notes = [ln for ln in lines if ln.startswith("waiting for run")]
    assert len(notes) == 1, lines  # once, not once per poll
    until = time.strftime("%H:%M:%S", time.localtime(t0 + 1.5))
    assert str(lease) in notes[0] and "is gone" in notes[0] and until in notes[0] and "--lease-timeout 1.5" in notes[0]
    assert started and started[0] >= t0 + 1.5  # and it did wait: the pid check only informs


def test_corrupt_lease_has_no_live_holder_and_the_next_claim_takes_over(tmp_path):
    from sweeps.registry import Registry

    sw, (spec,) = _units_sweep(tmp_path)
    reg = Registry(sw.runs_dir, lease_timeout=60, heartbeat=1, max_attempts=3)
    d = reg.run(spec.run_id).path
    d.mkdir(parents=True)
    (d / "lease.1").write_text('{"worker": "w", "pid": 1')  # truncated; fresh mtime
    assert reg.state(spec.run_id) == "pending" and reg.attempts(spec.run_id) == 1
    assert [p.name for p, _ in reg.corrupt_leases(spec.run_id)] == ["lease.1"]
    lease = reg.claim(spec, "next")
    assert lease is not None and lease.number == 2
    lease.finish("failed", error="x")
    assert reg.failure(spec.run_id) == "x" and reg.attempts(spec.run_id) == 2
    (d / "lease.3").write_text("")  # an empty lease is a claim being written, not a corrupt one: live while young
    assert reg.state(spec.run_id) == "running"
    assert [p.name for p, _ in reg.corrupt_leases(spec.run_id)] == ["lease.1"]


# -- the loader's rules --------------------------------------------------------------------------------------
def test_yaml_loader_reads_exponents_and_allows_small_anchors(tmp_path):
    from scaling import yamlio
    from scaling.errors import ConfigError

    doc = yamlio.loads("a: 1e-3\nb: 3E+5\nc: '1e-3'\nbase: &b {partition: gpu, time_min: 60}\n"
                       "gpu:\n  <<: *b\n  time_min: 120\nsame: *b\n", source="x.yaml")
    assert doc["a"] == 0.001 and doc["b"] == 3e5 and doc["c"] == "1e-3"
    assert doc["gpu"] == {"partition": "gpu", "time_min": 120} and doc["same"]["time_min"] == 60
    with pytest.raises(ConfigError, match="contains itself"):
        yamlio.loads("a: &a [1, *a]\n", source="x.yaml")
    # a sweep file may still use anchors, e.g. for its resources
    from sweeps.schema import load_sweep

    (tmp_path / "S.yaml").write_text(BASE + "resources:\n  default: &g {partition: gpu}\n  toy-xs: *g\n")
    assert load_sweep(tmp_path / "S.yaml").resources_for("toy-xs").partition == "gpu"
