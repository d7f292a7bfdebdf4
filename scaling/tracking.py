"""Live tracking: the run directory (metrics.jsonl) is the source of truth; Weights & Biases is a
live mirror of it, written from rank 0 while the run trains.

A launcher that is asked to track (``scaling run --wandb [offline|online]``) writes the run's
``tracking.json`` (mode, project, group = sweep name, and the run's config: sweep, arm, model,
budget and its plan row) when it claims the run. ``trainer.execute`` finds that file in every
launcher alike (in-process workers, worker processes, accelerate, torchrun under SLURM), opens
one wandb run whose id is the run id (``resume="allow"``: a restarted run continues the same
wandb run) and hands the loop a sink that mirrors every metrics row. Offline unless the user asks
for 'online'; wandb is imported only when a run is tracked (``pip install '.[wandb]'``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scaling import atomic
from scaling.errors import ConfigError

MODES = ("offline", "online", "disabled")
TRACKING_FILE = "tracking.json"


@dataclass
class Tracking:
    mode: str = "offline"
    project: str = "speech-scaling"
    group: str = ""
    config: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"must be one of {', '.join(MODES)}", field="--wandb", value=self.mode)

    def write(self, run_path: Path) -> Path:
        return atomic.write_json(Path(run_path) / TRACKING_FILE, asdict(self))

    @classmethod
    def read(cls, run_path: Path) -> "Tracking | None":
        p = Path(run_path) / TRACKING_FILE
        if not p.is_file():
            return None
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            return cls(**d)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"not a tracking file ({e})", source=str(p)) from None


def require_wandb(mode: str) -> None:
    """A clear error now (at launch) rather than in every run when wandb is missing."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError("needs the optional wandb package: pip install 'speech-scaling[wandb]'",
                          field="--wandb", value=mode) from None


class WandbTracker:
    """One wandb run per run directory, id = run id; ``__call__(row)`` mirrors one metrics row."""

    def __init__(self, run, tracking: Tracking):
        import wandb

        self.run_id = run.run_id
        self.wb = wandb.init(project=tracking.project, group=tracking.group or None, name=run.run_id, id=run.run_id,
                             job_type=tracking.config.get("arm"), config=tracking.config, dir=str(run.path),
                             mode=tracking.mode, resume="allow", settings=wandb.Settings(silent=True))
        # every series is plotted against the optimiser step of the row (restarts and cooldown
        # branches repeat steps; wandb's own _step stays monotonic)
        self.wb.define_metric("step")
        self.wb.define_metric("*", step_metric="step")

    def __call__(self, row: dict) -> None:
        prefix = f"cooldown_{row['branch']}/" if row.get("branch") is not None else ""
        out = {prefix + k: v for k, v in row.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("branch",)}
        if prefix and "at" in row:
            out["step"] = row.get("step", row["at"])
        if "kind" in row:  # evaluations: their kind as a text column beside the numbers
            out[prefix + "eval_kind"] = row["kind"]
        self.wb.log(out)

    def finish(self, summary: dict | None = None, *, exit_code: int = 0) -> None:
        if summary:
            self.wb.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
        self.wb.finish(exit_code=exit_code)


def tracker_for(run):
    """The run's tracker if its launcher asked for one (tracking.json), else None."""
    t = Tracking.read(run.path)
    if t is None or t.mode == "disabled":
        return None
    require_wandb(t.mode)
    return WandbTracker(run, t)
