"""Learning-rate schedules as pure functions of the step (so a resumed run matches exactly)."""
from __future__ import annotations

import math


def warmup_steps(total_steps: int, warmup_frac: float) -> int:
    return max(1, int(round(total_steps * warmup_frac))) if warmup_frac > 0 else 0


def cosine_with_min_lr(step: int, total_steps: int, lr: float, min_lr: float, warmup: int) -> float:
    """Linear warmup to ``lr``, then cosine decay reaching ``min_lr`` exactly at the last step.

    The schedule is stretched to the run's own step count, so a run stopped at its token
    budget ends its decay there (SIMS: 5e-4 -> 5e-5, 1% warmup).
    """
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    decay_steps = max(1, total_steps - warmup - 1)
    progress = min(1.0, (step - warmup) / decay_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def cooldown_steps(total_steps: int, cooldown_frac: float) -> int:
    return max(1, math.ceil(total_steps * cooldown_frac))


def wsd(step: int, total_steps: int, lr: float, min_lr: float, warmup: int, cooldown: int) -> float:
    """Warmup-stable-decay: linear warmup, constant ``lr``, then a 1-sqrt cooldown over the last
    ``cooldown`` steps reaching ``min_lr`` at the last step (Hägele et al. 2024)."""
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    start = total_steps - cooldown
    if step < start:
        return lr
    progress = (step - start + 1) / cooldown
    return min_lr + (lr - min_lr) * (1.0 - math.sqrt(progress))
