"""Pairwise likelihood scoring: the shared mechanics of sWUGGY, sBLIMP and (s/t)StoryCloze.

A pair scores 1 if the model gives the positive member the lower NLL, 0.5 on a tie, else 0.
Normalisation ``mean`` (per-token NLL, the published default) or ``sum``; span ``whole``
(every predicted token) or ``continuation`` (only the last segment, e.g. a story's ending).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from scaling.errors import ConfigError


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    cont_start: int  # index of the first token of the last segment (its marker)


def encode_segments(segments: list[dict], tokenizer, vocab, *, item: str = "?") -> Encoded:
    """Token ids of a segment list: a marker opens the sequence and every modality switch."""
    ids: list[int] = []
    cont_start = 0
    prev = None
    for k, seg in enumerate(segments):
        mod = seg.get("modality")
        if mod not in ("speech", "text"):
            raise ConfigError(f"item {item}: unknown modality", field="modality", value=mod)
        if k == len(segments) - 1:
            cont_start = len(ids)
        if mod != prev:
            ids.append(vocab.speech if mod == "speech" else vocab.text)
        if mod == "speech":
            try:
                ids.extend(vocab.units_to_ids(seg["units"]))
            except ConfigError as e:
                raise ConfigError(f"item {item}: {e}") from None
        else:
            text = seg["text"] if k == 0 else " " + seg["text"]  # words after the first carry their space
            ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        prev = mod
    return Encoded(ids, cont_start)


@torch.no_grad()
def sequence_nll(model, seqs: list[Encoded], *, batch_size: int = 32, device=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per sequence: summed NLL and predicted-token count, over the whole sequence and the continuation."""
    device = device or next(model.parameters()).device
    n = len(seqs)
    whole_sum, whole_n = np.zeros(n), np.zeros(n, dtype=np.int64)
    cont_sum, cont_n = np.zeros(n), np.zeros(n, dtype=np.int64)
    order = sorted(range(n), key=lambda i: len(seqs[i].ids))  # length bucketing
    for b in range(0, n, batch_size):
        idx = order[b:b + batch_size]
        width = max(len(seqs[i].ids) for i in idx)
        ids = torch.zeros(len(idx), width, dtype=torch.long)
        mask = torch.zeros(len(idx), width, dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, :len(seqs[i].ids)] = torch.tensor(seqs[i].ids)
            mask[r, :len(seqs[i].ids)] = 1
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
        valid = mask[:, 1:].bool()
        pos = torch.arange(1, width, device=device).unsqueeze(0)
        for r, i in enumerate(idx):
            v = valid[r]
            whole_sum[i] = nll[r][v].sum().item()
            whole_n[i] = int(v.sum())
            c = v & (pos[0] >= max(seqs[i].cont_start, 1))
            cont_sum[i] = nll[r][c].sum().item()
            cont_n[i] = int(c.sum())
    return whole_sum, whole_n, cont_sum, cont_n


def pair_scores(nll_pos: np.ndarray, nll_neg: np.ndarray) -> np.ndarray:
    return np.where(nll_pos < nll_neg, 1.0, np.where(nll_pos == nll_neg, 0.5, 0.0))


def score_pairs(model, pairs: list[tuple[Encoded, Encoded]], *, norm: str = "mean", span: str = "whole",
                batch_size: int = 32) -> np.ndarray:
    if norm not in ("mean", "sum"):
        raise ConfigError("must be 'mean' or 'sum'", field="norm", value=norm)
    if span not in ("whole", "continuation"):
        raise ConfigError("must be 'whole' or 'continuation'", field="span", value=span)
    seqs = [p for pair in pairs for p in pair]
    ws, wn, cs, cn = sequence_nll(model, seqs, batch_size=batch_size)
    tot, cnt = (ws, wn) if span == "whole" else (cs, cn)
    val = tot / np.maximum(cnt, 1) if norm == "mean" else tot
    return pair_scores(val[0::2], val[1::2])
