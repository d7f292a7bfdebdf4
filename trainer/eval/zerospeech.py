"""ZeroSpeech 2021 sLM21 scores as the official toolkit computes them, and its submission files.

Read from the official scorer (``zerospeech2021`` lexical.py / syntactic.py and ``zerospeech-benchmarks``
tasks/lm/*.py, submissions/sLM21.py); a pair scores 1 if the word (sentence) has the higher
log-probability, 0.5 on equality, else 0. Then:

- lexical: the pairs of an id (every voice, every non-word of that voice) are averaged; ``all`` is
  the mean over ids. Each id falls into a frequency band by its word's LibriSpeech count, left-closed
  edges [0, 1, 5, 20, 100, inf) labelled oov, 1-5, 6-20, 21-100, >100 (the official labels, so a word
  seen 5 times is in "6-20"); per band: count, mean, sample std. ``in_vocab`` is the count-weighted
  mean of the non-oov band means *as the leaderboard reads them back from the 4-decimal CSV it writes*
  (so within 5e-5 of the mean over in-vocabulary ids). Bands without ids are left out (the official
  leaderboard would return NaN there; the released sets populate every band).
- syntactic: the pairs of a (type, subtype, id) group are averaged; ``all`` is the mean over groups;
  per type (the official table) and per subtype: count, mean, sample std of the group means.
- beside them, ``pairs_mean``: the plain mean over pairs, which is how SlamKit scores its sWUGGY /
  sBLIMP folders (``trainer.eval.formats.load_slamkit_zerospeech`` reads those onto the groups above).

Torch-free: it works on per-pair scores and labels.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from scaling.errors import ConfigError

BANDS = (("oov", 0.0, 1.0), ("1-5", 1.0, 5.0), ("6-20", 5.0, 20.0), ("21-100", 20.0, 100.0), (">100", 100.0, math.inf))
TASKS = ("lexical", "syntactic")


def frequency_band(freq) -> str | None:
    """The official band of a word count (None when the count is missing)."""
    if freq is None or (isinstance(freq, str) and not freq.strip()):
        return None
    f = float(freq)
    if math.isnan(f):
        return None
    for name, lo, hi in BANDS:
        if lo <= f < hi:
            return name
    return None  # a negative count is in no band, as with pandas.cut


def group_means(groups, scores) -> tuple[list, np.ndarray, list[int]]:
    """(group keys in first-seen order, mean score per group, index of each group's first pair)."""
    keys, first, sums, counts = [], [], {}, {}
    for i, (g, s) in enumerate(zip(groups, scores)):
        if g not in sums:
            keys.append(g)
            first.append(i)
            sums[g], counts[g] = 0.0, 0
        sums[g] += float(s)
        counts[g] += 1
    return keys, np.array([sums[g] / counts[g] for g in keys], dtype=np.float64), first


def _table(labels: list, values: np.ndarray, order=None) -> list[dict]:
    out = []
    for lab in (order if order is not None else sorted(set(labels))):
        v = values[[i for i, x in enumerate(labels) if x == lab]]
        if v.size:
            out.append({"label": lab, "n": int(v.size), "score": float(v.mean()),
                        "std": float(v.std(ddof=1)) if v.size > 1 else float("nan")})
    return out


def _csv4(x: float) -> float:
    """A value as the official scorer writes it (float_format='%.4f') and reads it back."""
    return float(f"{x:.4f}")


def aggregate(task: str, groups, scores, labels: dict[str, list]) -> dict:
    """Official summary of one task from per-pair ``scores`` (1 / 0.5 / 0), their ``groups`` and
    per-pair ``labels`` (lexical: "frequency"; syntactic: "type", "subtype")."""
    if task not in TASKS:
        raise ConfigError(f"unknown ZeroSpeech task; known: {list(TASKS)}", field="task", value=task)
    keys, means, first = group_means(groups, scores)
    out = {"task": task, "all": float(means.mean()) if means.size else float("nan"), "groups": len(keys),
           # beside the official score: the plain mean over pairs, SlamKit's sWUGGY / sBLIMP score
           "pairs_mean": float(np.mean(scores)) if len(scores) else float("nan")}
    if task == "lexical":
        freq = labels.get("frequency")
        if freq is not None:
            bands = [frequency_band(freq[i]) for i in first]
            table = _table(bands, means, order=[b[0] for b in BANDS])
            out["by_frequency"] = table
            inv = [r for r in table if r["label"] != "oov"]
            out["in_vocab"] = float(np.average([_csv4(r["score"]) for r in inv], weights=[r["n"] for r in inv])) \
                if inv else float("nan")
    else:
        for col in ("type", "subtype"):
            if col in labels:
                out[f"by_{col}"] = _table([labels[col][i] for i in first], means)
    return out


def submission_lines(files: list[tuple[str, str]], logprob_pos, logprob_neg, *, source: str = "results") -> dict[str, float]:
    """One log-probability per audio file (a file in several pairs must have one value)."""
    out: dict[str, float] = {}
    for (fp, fn), a, b in zip(files, logprob_pos, logprob_neg):
        for f, v in ((fp, float(a)), (fn, float(b))):
            if f in out and out[f] != v:
                raise ConfigError(f"file {f!r} was scored {out[f]!r} and {v!r}", source=source, field="files", value=f)
            out[f] = v
    return out


def write_submission(out_dir: str | Path, task: str, scores: dict[str, float], *, split: str = "dev") -> Path:
    """``<out_dir>/<task>/<split>.txt``: ``<filename> <log-probability>`` per line (higher = more likely),
    the official sLM21 submission format; written to a temporary name and renamed."""
    from scaling import atomic

    if task not in TASKS:
        raise ConfigError(f"unknown ZeroSpeech task; known: {list(TASKS)}", field="task", value=task)
    if split not in ("dev", "test"):
        raise ConfigError("must be 'dev' or 'test'", field="split", value=split)
    lines = []
    for f in sorted(scores):
        name = Path(f).stem if Path(f).suffix.lower() in (".wav", ".flac") else Path(f).name
        if " " in name:
            raise ConfigError("a submission file name cannot hold a space", field="filename", value=f)
        lines.append(f"{name} {scores[f]!r}")
    return atomic.write_text(Path(out_dir) / task / f"{split}.txt", "\n".join(lines) + "\n")
