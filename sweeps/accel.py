"""Multi-GPU launcher: the registry's worker loop, each claimed run trained by
`accelerate launch -m scaling.cli train runs/<id>` (an argument list, never a shell string)."""
from __future__ import annotations

import shlex
import subprocess

from scaling.rundir import RunDir
from sweeps.local import work, write_results
from sweeps.registry import Registry
from sweeps.schema import Sweep


def accelerate_command(run: RunDir, extra: str = "") -> list[str]:
    return ["accelerate", "launch", *shlex.split(extra), "-m", "scaling.cli", "train", str(run.path)]


def run_accelerate(sweep: Sweep, specs, registry: Registry, *, extra: str = "", echo=print) -> dict:
    def execute(run: RunDir) -> dict:
        cmd = accelerate_command(run, extra)
        proc = subprocess.run(cmd)  # inherits this process's stdout and stderr
        rec = run.result()
        if proc.returncode != 0 or rec is None or run.status != "done":
            raise RuntimeError(f"{' '.join(cmd)} exited with status {proc.returncode}")
        return rec

    counts = work(sweep, specs, registry, echo=echo, execute=execute)
    write_results(sweep, specs)
    return counts
