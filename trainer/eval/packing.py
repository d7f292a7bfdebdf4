"""Packed scoring rows: the members of a pair share their common prefix, and many pairs share a row.

Without a KV cache, the cheap way to score a StoryCloze pair is one *prefix tree* per pair: the tokens
both members start with (the whole spoken story) once, then each member's own suffix. The row's 4D
attention mask lets a suffix token see the shared prefix and its own suffix only, and its position ids
continue from the prefix, so every token's hidden state is the one the member's own, unpadded forward
gives (float rounding apart). A token is then predicted from its *parent* (the previous token of its
member), not from the previous row position: the first token of the second suffix is predicted from
the last prefix token.

Short trees (sWUGGY's ~12-token words) are packed side by side in one row, isolated by the same mask
(as ``trainer.attention`` isolates packed training documents), so a forward is full of real tokens
instead of row overhead or padding. Rows of one batch have one width: the longest tree in the batch
or ``row_tokens``, whichever is larger.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Tree:
    """One group of sequences (indices into the caller's list) sharing their longest common prefix."""

    members: tuple[int, ...]
    ids: np.ndarray       # [L] row tokens: the prefix, then each member's suffix in turn
    pos: np.ndarray       # [L] position ids: a suffix continues from the prefix
    branch: np.ndarray    # [L] 0 for the prefix, k + 1 for member k's suffix
    parent: np.ndarray    # [L] row index of the token a token is predicted from (-1: a first token)
    origin: np.ndarray    # [L] index of the token in its own sequence

    def __len__(self) -> int:
        return len(self.ids)


def common_prefix(seqs: list[list[int]]) -> int:
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs[1:]):
            return i
    return n


def make_tree(members: tuple[int, ...], seqs: list[list[int]]) -> Tree:
    """The prefix tree of ``seqs`` (the sequences of ``members``)."""
    p = common_prefix(seqs) if len(seqs) > 1 else len(seqs[0])
    ids, pos, branch, parent, origin = [list(seqs[0][:p])], [np.arange(p)], [np.zeros(p, np.int64)], [], []
    parent.append(np.arange(p) - 1)
    origin.append(np.arange(p))
    at = p
    for k, s in enumerate(seqs):
        n = len(s) - p
        if n <= 0:
            continue
        ids.append(list(s[p:]))
        pos.append(np.arange(p, len(s)))
        branch.append(np.full(n, k + 1, np.int64))
        par = np.arange(at - 1, at + n - 1)
        par[0] = p - 1  # the first suffix token follows the last prefix token (-1 without a prefix)
        parent.append(par)
        origin.append(np.arange(p, len(s)))
        at += n
    return Tree(members, np.concatenate([np.asarray(x, np.int64) for x in ids]), np.concatenate(pos),
                np.concatenate(branch), np.concatenate(parent), np.concatenate(origin))


def pack_batches(trees: list[Tree], *, row_tokens: int, max_tokens: int, max_rows: int) -> list[list[list[int]]]:
    """Trees (by index) into batches of rows: trees in ascending length, next-fit into rows of the
    batch's width (``max(row_tokens, longest tree)``), a batch closing before rows x width would pass
    ``max_tokens`` or the rows ``max_rows`` (a single tree longer than that is a batch of its own)."""
    order = sorted(range(len(trees)), key=lambda i: len(trees[i]))
    out, rows, fill, width = [], [], 0, row_tokens
    for i in order:
        n = len(trees[i])
        w = max(width, n)
        new_row = not rows or fill + n > w
        if rows and ((len(rows) + new_row) * w > max_tokens or len(rows) + new_row > max_rows):
            out.append(rows)
            rows, fill, w, new_row = [], 0, max(row_tokens, n), True
        width = w
        if new_row:
            rows.append([i])
            fill = n
        else:
            rows[-1].append(i)
            fill += n
    if rows:
        out.append(rows)
    return out


@dataclass
class Batch:
    ids: torch.Tensor          # [B, W]
    inputs: dict               # position_ids and the 4D attention mask
    hid: torch.Tensor          # [M] flat row index of the hidden state predicting each scored token
    target: torch.Tensor       # [M] the predicted token
    tok: torch.Tensor          # [K] scored token (index into M) of each contribution: a prefix token
    seq: torch.Tensor          # [K]   contributes once to every member of its tree
    cont: torch.Tensor         # [K] bool: in that sequence's continuation span


def build_batch(rows: list[list[int]], trees: list[Tree], cont_start: list[int], device) -> Batch:
    width = max(sum(len(trees[i]) for i in row) for row in rows)
    B = len(rows)
    ids = np.zeros((B, width), np.int64)
    pos = np.zeros((B, width), np.int64)
    group = np.full((B, width), -1, np.int64)  # tree of every slot; padding: -1 (attends itself only)
    branch = np.zeros((B, width), np.int64)
    hid, target, tok, seq, cont = [], [], [], [], []
    g = m_at = 0
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            t = trees[i]
            n = len(t)
            sl = slice(at, at + n)
            ids[r, sl], pos[r, sl], branch[r, sl], group[r, sl] = t.ids, t.pos, t.branch, g
            scored = np.nonzero(t.parent >= 0)[0]
            hid.append(r * width + at + t.parent[scored])
            target.append(t.ids[scored])
            sb, so = t.branch[scored], t.origin[scored]
            for k, m in enumerate(t.members):
                mine = np.nonzero((sb == 0) | (sb == k + 1))[0]  # member k: the prefix and its own suffix
                tok.append(m_at + mine)
                seq.append(np.full(len(mine), m, np.int64))
                cont.append(so[mine] >= max(cont_start[m], 1))
            m_at += len(scored)
            at += n
            g += 1
    gi = torch.from_numpy(group)
    bi = torch.from_numpy(branch)
    same = (gi.unsqueeze(2) == gi.unsqueeze(1)) & (gi.unsqueeze(2) >= 0)
    shared = (bi.unsqueeze(1) == 0) | (bi.unsqueeze(2) == bi.unsqueeze(1))  # the key is the prefix or my branch
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    mask = (same & shared & causal) | torch.eye(width, dtype=torch.bool)
    cat = lambda xs, dt=torch.long: torch.from_numpy(np.concatenate(xs)).to(device=device, dtype=dt)
    return Batch(torch.from_numpy(ids).to(device),
                 {"position_ids": torch.from_numpy(pos).to(device), "attention_mask": mask.unsqueeze(1).to(device)},
                 cat(hid), cat(target), cat(tok), cat(seq), cat(cont, torch.bool))


def gathered_nll(hidden: torch.Tensor, weight: torch.Tensor, hid: torch.Tensor, target: torch.Tensor, *,
                 chunk_size: int = 4096) -> torch.Tensor:
    """NLL [M] of ``target`` from the hidden states at flat row positions ``hid`` (the LM head in
    chunks of rows, as ``trainer.kernels.chunked_ce.token_nll`` applies it)."""
    from trainer.kernels.chunked_ce import _compute_dtype

    h = hidden.reshape(-1, hidden.shape[-1])
    cdtype = _compute_dtype(h)
    w = weight.to(cdtype)
    out = torch.empty(len(hid), dtype=torch.float32, device=h.device)
    for s in range(0, len(hid), chunk_size):
        e = min(s + chunk_size, len(hid))
        logits = (h[hid[s:e]].to(cdtype) @ w.t()).float()
        out[s:e] = torch.logsumexp(logits, dim=-1) - logits.gather(1, target[s:e].unsqueeze(1)).squeeze(1)
    return out
