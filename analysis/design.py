"""How wide will the intervals of a grid be? The linearised Huber fit, without a single refit.

The parametric fit (:func:`analysis.fits.parametric.fit_parametric`) is an M-estimator: it solves
sum_i J_i psi(r_i) = 0 with psi = clip(., -delta, delta) (Huber's derivative) of the log residuals
r_i and J_i = d log L_i / d theta the Jacobian of the log law in theta = (log A, log B, log E, alpha,
beta). Linearised at the pilot law, theta_hat - theta ~ H^-1 sum_i J_i psi(eps_i) with
H = sum_i kappa_i J_i J_i', kappa_i = P(|eps_i| < delta), so

- the **sampling** covariance of the estimate (what repeating the study would show) is the sandwich
  H^-1 J' S J H^-1 with S_ij = E[psi(eps_i) psi(eps_j)]: the points of one run are correlated
  (:mod:`analysis.noise`), and so are their psi's, by (2/pi) arcsin(rho_ij) (the delta << sd limit:
  psi is nearly delta sign(eps) when delta = 1e-3 and the scatter is ~1%);
- the **bootstrap** covariance (what ``scaling fit --bootstrap`` reports, and what the fit's
  CAUTION verdict reads) resamples points as if they were independent, about the fitted law: the
  same sandwich with S diagonal and each point's noise replaced by its fitted residual's, whose
  covariance Sigma - P Sigma - Sigma P' + J V J' (P = J H^-1 J' diag(kappa), by Stein's lemma)
  is smaller than Sigma where the law absorbs run effects. With several points per run the
  bootstrap interval is narrower than the true spread.

Widths are 2 x 1.96 sd of alpha, beta, a = beta/(alpha+beta) or the compute-optimal loss at a stated
compute, by the delta method; ``exponents`` is the worst of alpha, beta and a as a fraction of the verdict's
'wide' limit (what decides whether a fit is flagged). Used by ``scaling design`` to rank candidate grids (the simulator of
:mod:`analysis.power` confirms the best).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

from scaling.errors import ConfigError

from .noise import NoiseModel, covariance, log_jacobian

Z95 = 1.959964
TARGETS = ("a", "alpha", "beta", "exponents", "loss")
#: The exponents the fit's verdict reads: ``exponents`` is the worst of their widths over the 'wide' limit
EXPONENTS = ("alpha", "beta", "a")


def _theta(law) -> np.ndarray:
    return np.array([math.log(law.A), math.log(law.B), math.log(law.E) if law.E > 0 else -30.0, law.alpha, law.beta])


def _loss_opt(theta: np.ndarray, C: float) -> float:
    """L(N_opt(C), D_opt(C)) of the law at ``theta`` (:func:`analysis.fits.bootstrap.derived`)."""
    from .fits.bootstrap import derived

    return float(derived(theta[None, :], C)["loss_opt"][0])


def gradients(law, compute: float | None = None) -> dict[str, np.ndarray]:
    """d target / d theta for each target (``loss``: the compute-optimal loss at ``compute``)."""
    al, be = law.alpha, law.beta
    s = (al + be) ** 2
    out = {"alpha": np.array([0, 0, 0, 1.0, 0]), "beta": np.array([0, 0, 0, 0, 1.0]),
           "a": np.array([0, 0, 0, -be / s, al / s])}
    if compute is not None:
        th = _theta(law)
        g = np.zeros(5)
        for k in range(5):
            h = 1e-5 * max(1.0, abs(th[k]))
            up, dn = th.copy(), th.copy()
            up[k] += h
            dn[k] -= h
            g[k] = (_loss_opt(up, compute) - _loss_opt(dn, compute)) / (2 * h)
        out["loss"] = g
    return out


def _huber_moments(sd: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """kappa = P(|eps| < delta) and E[psi(eps)^2] for eps ~ N(0, sd^2), psi = clip(eps, -delta, delta)."""
    sd = np.maximum(sd, 1e-300)
    z = np.minimum(delta / sd, 40.0)  # beyond 40 sd every deviation is inside delta
    kappa = erf(z / math.sqrt(2))
    phi = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    inner = sd ** 2 * (kappa - 2 * z * phi)  # E[eps^2; |eps| < delta]
    return kappa, inner + delta ** 2 * (1 - kappa)


def covariances(law, N, D, runs, noise: NoiseModel, *, delta: float = 1e-3) -> dict[str, np.ndarray]:
    """The 5 x 5 covariance of theta_hat: ``sampling`` (the spread across repeated studies, run
    clusters included) and ``bootstrap`` (what the pairs bootstrap of one study estimates)."""
    J = log_jacobian(law, N, D)
    Sig = covariance(noise, runs, D)
    sd = np.sqrt(np.diag(Sig))
    kappa, psi2 = _huber_moments(sd, delta)
    rho = np.clip(Sig / np.outer(sd, sd), -1.0, 1.0)
    S = np.sqrt(np.outer(psi2, psi2)) * (2.0 / math.pi) * np.arcsin(rho)
    np.fill_diagonal(S, psi2)
    H = J.T @ (kappa[:, None] * J)
    try:
        Hi = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        raise ConfigError("the grid does not identify the law's five parameters (a singular design)",
                          field="points") from None
    V = Hi @ (J.T @ S @ J) @ Hi
    P = J @ Hi @ J.T * kappa[None, :]
    R = Sig - P @ Sig - Sig @ P.T + J @ V @ J.T  # covariance of the fitted residuals
    kb, pb = _huber_moments(np.sqrt(np.clip(np.diag(R), 0.0, None)), delta)
    Hb = np.linalg.inv(J.T @ (kb[:, None] * J))
    return {"sampling": V, "bootstrap": Hb @ (J.T @ (pb[:, None] * J)) @ Hb}


def predict(law, N, D, runs, noise: NoiseModel, *, delta: float = 1e-3, compute: float | None = None) -> dict:
    """Predicted 95% interval widths ``{"bootstrap": {target: w}, "sampling": {target: w}}`` of alpha,
    beta, a (and ``loss``, the compute-optimal loss at ``compute``) for a study at the points (N, D),
    ``runs`` naming each point's run, under the pilot ``law`` and ``noise``."""
    cov = covariances(law, N, D, runs, noise, delta=delta)
    grads = gradients(law, compute)
    out = {kind: {k: float(2 * Z95 * math.sqrt(max(g @ V @ g, 0.0))) for k, g in grads.items()}
           for kind, V in cov.items()}
    for w in out.values():
        w["exponents"] = max(w[k] / wide_limit(law, k) for k in EXPONENTS)
    return out


def wide_limit(law, target: str) -> float:
    """The fit verdict's 'wide' limit of an exponent's 95% interval: max(0.5 |estimate|, 0.1); 1 for
    ``exponents`` (already a fraction of the limit)."""
    if target == "exponents":
        return 1.0
    v = {"alpha": law.alpha, "beta": law.beta, "a": law.beta / (law.alpha + law.beta)}[target]
    return max(0.5 * abs(v), 0.1)


__all__ = ["predict", "covariances", "gradients", "wide_limit", "TARGETS", "NoiseModel"]
