"""Tracking: the run directories are the source of truth; Weights & Biases is an optional sink.

One wandb run per grid point (id = run id, so re-logging a run resumes it rather than duplicating
it), grouped by sweep; offline unless the user asks for 'online'. Nothing here is imported unless
`--wandb` is given, and wandb itself is imported only then (pip install '.[wandb]').
"""
from __future__ import annotations

from scaling.errors import ConfigError


class WandbSink:
    def __init__(self, sweep, mode: str = "offline", project: str = "speech-scaling"):
        if mode not in ("offline", "online", "disabled"):
            raise ConfigError("must be offline, online or disabled", field="--wandb", value=mode)
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ConfigError("needs the optional wandb package: pip install 'speech-scaling[wandb]'",
                              field="--wandb", value=mode) from None
        self.sweep, self.mode, self.project = sweep, mode, project

    def log_run(self, spec, record: dict, run) -> None:
        """Replay the run's metrics.jsonl and its result record into one wandb run."""
        import wandb

        wb = wandb.init(project=self.project, group=self.sweep.name, name=spec.run_id, id=spec.run_id,
                        job_type=spec.arm, config=spec.to_dict(), dir=str(run.path), mode=self.mode, resume="allow")
        try:
            for row in run.metrics():
                wb.log({k: v for k, v in row.items() if isinstance(v, (int, float))})
            wb.summary.update({k: v for k, v in record.items() if isinstance(v, (int, float, str))})
        finally:
            wb.finish()
