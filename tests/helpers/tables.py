"""Results tables written as results.csv is (floats by repr), for tests of the loader and of the
``scaling fit`` command."""
from __future__ import annotations

import csv
import math

import numpy as np

from analysis.fits.synthetic import Law

LAWS = {"interleaved": {"E": 1.6, "A": 300.0, "B": 900.0, "alpha": 0.33, "beta": 0.30},
        "textless": {"E": 1.8, "A": 250.0, "B": 1200.0, "alpha": 0.30, "beta": 0.28}}


def write_two_arm_csv(path, seed: int = 0) -> None:
    """Two arms on an isoFLOP grid (4 budgets x 4 sizes), with item counts, a NaN loss, a failed
    run and a textlm run; floats written as results.csv writes them (repr)."""
    rng = np.random.default_rng(seed)
    cols = ["run_id", "arm", "params", "tokens", "flops", "budget", "val_loss_speech", "ssc", "ssc_n", "swuggy", "status"]
    rows = []
    for arm, p in LAWS.items():
        law = Law(**p)
        for C in (1e18, 3e18, 1e19, 3e19):
            for N in law.n_opt(C) * np.geomspace(1 / 3, 3, 4):
                D = C / (6 * N)
                cells = (N, D, 6 * N * D, C, law.loss(N, D) * math.exp(rng.normal(0, 0.003)),
                         0.5 + 0.05 * math.log10(C / 1e18) + rng.normal(0, 0.01))
                rows.append([f"{arm}-{C:.0e}-{N:.2e}", arm, *(repr(float(x)) for x in cells), "2000", "", "done"])
    rows[5][6] = ""  # a missing loss: left out of the fits, listed under "dropped"
    rows.append(["failed-1"] + rows[0][1:-1] + ["failed"])
    rows.append(["textlm-1", "textlm", "1e8", "1e10", "6e18", "", "", "", "", "", "done"])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerows(rows)
