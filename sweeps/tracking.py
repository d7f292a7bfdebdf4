"""What a sweep's launcher tells a tracked run (see scaling/tracking.py for the tracker itself)."""
from __future__ import annotations

from scaling.tracking import MODES, Tracking, require_wandb

__all__ = ["MODES", "Tracking", "require_wandb", "run_config", "tracking_for"]


def run_config(sweep, spec) -> dict:
    """What a tracked run carries as config: the sweep, arm, model, budget and the run's plan row."""
    from sweeps.plan import plan_rows

    return {"sweep": sweep.name, "arm": spec.arm, "model": spec.model, "budget": spec.budget,
            "plan": plan_rows([spec])[0], "spec": spec.to_dict()}


def tracking_for(sweep, spec, mode: str, project: str = "speech-scaling") -> Tracking:
    return Tracking(mode=mode, project=project, group=sweep.name, config=run_config(sweep, spec))
