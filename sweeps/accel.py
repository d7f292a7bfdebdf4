"""Multi-GPU launcher: the registry's worker loop, each claimed run trained by
`accelerate launch -m scaling.cli train runs/<id>` (an argument list, never a shell string)."""
from __future__ import annotations

import shlex
import subprocess

from scaling.rundir import RunDir
from sweeps.local import outcome, work
from sweeps.registry import Registry
from sweeps.schema import Sweep


def accelerate_command(run: RunDir, extra: str = "") -> list[str]:
    return ["accelerate", "launch", *shlex.split(extra), "-m", "scaling.cli", "train", str(run.path)]


def command_executor(command):
    """``execute(run)`` that trains the run in a child command (``command(run)`` -> argument list)."""
    def execute(run: RunDir) -> dict:
        cmd = command(run)
        proc = subprocess.run(cmd)  # inherits this process's stdout and stderr
        rec = run.result()
        if proc.returncode != 0 or rec is None or run.status != "done":
            err = run.state().get("error")
            raise RuntimeError(f"{' '.join(cmd)} exited with status {proc.returncode}" + (f": {err}" if err else ""))
        return rec

    return execute


def run_accelerate(sweep: Sweep, specs, registry: Registry, *, extra: str = "", wandb: str | None = None,
                   echo=print) -> dict:
    before = sum(registry.is_done(s.run_id) for s in specs)
    work(sweep, specs, registry, echo=echo, wandb=wandb, execute=command_executor(lambda run: accelerate_command(run, extra)))
    return outcome(sweep, specs, registry, before, echo=echo)
