"""Published laws to overlay on our fits (dashed): Cuervo & Marxer 2024, Hoffmann 2022, Epoch 2024.

Caveat when overlaying: each law is in its own loss units (Cuervo & Marxer's speech law is the
cross-entropy over 500 HuBERT units at 25 Hz; Hoffmann's and Epoch's are MassiveText nats per
token), so the dashed curves show shape and exponents, not directly comparable levels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .parametric import ParametricFit


@dataclass(frozen=True)
class ReferenceLaw:
    key: str
    label: str
    source: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    huber_delta: float
    gammas: tuple = ()  # (metric, gamma) pairs of Q = k C^gamma envelopes, where published

    def as_fit(self) -> ParametricFit:
        """The law as a :class:`ParametricFit` (objective NaN, no points) for predict / n_opt / loss_opt."""
        return ParametricFit(E=self.E, A=self.A, B=self.B, alpha=self.alpha, beta=self.beta,
                             objective=float("nan"), n_points=0, n_starts=0, converged=True,
                             huber_delta=self.huber_delta, message=f"published: {self.source}")

    def loss_opt(self, C):
        return self.as_fit().loss_opt(np.asarray(C, dtype=float))


REFERENCE_LAWS = {
    "cuervo_speech": ReferenceLaw("cuervo_speech", "Cuervo & Marxer speech (textless)", "arXiv 2404.00685",
                                  E=1.73, A=13.9, B=39.8, alpha=0.25, beta=0.24, huber_delta=0.03,
                                  gammas=(("sblimp", 0.021), ("tsc", 0.025), ("ssc", 0.017))),
    "cuervo_text": ReferenceLaw("cuervo_text", "Cuervo & Marxer text", "arXiv 2404.00685",
                                E=1.87, A=521.0, B=1488.0, alpha=0.35, beta=0.35, huber_delta=0.03,
                                gammas=(("sblimp", 0.066), ("tsc", 0.039), ("ssc", 0.046))),
    "hoffmann": ReferenceLaw("hoffmann", "Hoffmann et al. (Chinchilla)", "arXiv 2203.15556",
                             E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28, huber_delta=1e-3),
    "epoch": ReferenceLaw("epoch", "Besiroglu et al. (Epoch refit)", "arXiv 2404.10102",
                          E=1.817, A=482.0, B=2085.4, alpha=0.348, beta=0.366, huber_delta=1e-3),
}


def reference_law(key: str) -> ReferenceLaw:
    from scaling.errors import ConfigError

    if key not in REFERENCE_LAWS:
        raise ConfigError(f"unknown reference law (known: {', '.join(REFERENCE_LAWS)})", field="reference", value=key)
    return REFERENCE_LAWS[key]
