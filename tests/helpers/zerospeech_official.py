"""The official ZeroSpeech 2021 scorer's pandas steps, transcribed from zerospeech2021 lexical.py /
syntactic.py and zerospeech-benchmarks submissions/sLM21.py (in-vocab), for tests that compare with it."""
from __future__ import annotations

import numpy as np


def official_from_submission(gold_csv, submission, task):
    """The official scorer's pandas steps, transcribed (zerospeech2021 lexical.py / syntactic.py)."""
    import pandas as pd

    if task == "lexical":
        gold = pd.read_csv(gold_csv, header=0, index_col="filename").astype({"frequency": pd.Int64Dtype()})
        score = pd.read_csv(submission, sep=" ", header=None, names=["filename", "score"], index_col="filename")
        data = pd.merge(gold, score, on="filename", how="inner").reset_index()
        words = data.loc[data["correct"] == 1].reset_index().rename(lambda x: "w_" + x, axis=1)
        nws = data.loc[data["correct"] == 0].reset_index().rename(lambda x: "nw_" + x, axis=1)
        data = pd.merge(words, nws, left_on=["w_voice", "w_id"], right_on=["nw_voice", "nw_id"])
        s = data[["w_score", "nw_score"]].to_numpy()
        data["score"] = 0.5 * (s[:, 0] == s[:, 1]) + (s[:, 0] > s[:, 1])
        by_id = data.groupby("w_id").agg(score=("score", "mean"), frequency=("w_frequency", "first"))
        bands = pd.cut(by_id.frequency.astype(float), [0, 1, 5, 20, 100, float("inf")],
                       labels=["oov", "1-5", "6-20", "21-100", ">100"], right=False)
        table = by_id.score.groupby(bands, observed=False).agg(n="count", score="mean").reset_index()
        inv = table[table["frequency"] != "oov"]
        in_vocab = np.average([float(f"{x:.4f}") for x in inv["score"]], weights=inv["n"].to_numpy())
        return by_id.score.mean(), in_vocab
    gold = pd.read_csv(gold_csv, header=0, index_col="filename")
    score = pd.read_csv(submission, sep=" ", header=None, names=["filename", "score"], index_col="filename")
    data = pd.concat([gold, score], axis=1).reset_index(drop=True)
    data = pd.concat([data.loc[data["correct"] == 1].reset_index().rename(lambda x: "s_" + x, axis=1),
                      data.loc[data["correct"] == 0].reset_index().rename(lambda x: "ns_" + x, axis=1)], axis=1)
    s = data[["s_score", "ns_score"]].to_numpy()
    data["score"] = 0.5 * (s[:, 0] == s[:, 1]) + (s[:, 0] > s[:, 1])
    return data.groupby(["s_type", "s_subtype", "s_id"])["score"].mean().mean(), None
