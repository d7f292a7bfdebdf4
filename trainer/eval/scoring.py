"""Pairwise likelihood scoring: the shared mechanics of sWUGGY, sBLIMP and (s/t)StoryCloze.

A pair scores 1 if the model gives the positive member the lower NLL, 0.5 on a tie, else 0.
Normalisation ``mean`` (per-token NLL, the published default) or ``sum``; span ``whole``
(every predicted token) or ``continuation`` (only the last segment, e.g. a story's ending).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from scaling.errors import ConfigError

NORMS = ("mean", "sum")
SPANS = ("whole", "continuation")
#: How a pair member becomes token ids (README "Scoring conventions"). ``ours``: a modality marker opens
#: every sequence and every switch, a space before every text segment after the first. ``slamkit``:
#: SlamKit's encoding (speech-only items carry no marker, text segments joined as written, the text
#: tokenizer's own special tokens such as a Llama BOS around the whole sequence).
CONVENTIONS = ("ours", "slamkit")


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    cont_start: int  # index of the first token of the last segment (its marker when it switches modality)


@dataclass(frozen=True)
class SequenceNLL:
    """Per sequence: summed NLL (float64) and number of predicted tokens, whole and continuation."""

    whole_sum: np.ndarray
    whole_n: np.ndarray
    cont_sum: np.ndarray
    cont_n: np.ndarray

    def value(self, norm: str = "mean", span: str = "whole") -> np.ndarray:
        check_scoring(norm, span)
        tot, cnt = (self.whole_sum, self.whole_n) if span == "whole" else (self.cont_sum, self.cont_n)
        return tot / np.maximum(cnt, 1) if norm == "mean" else tot.copy()

    def count(self, span: str = "whole") -> np.ndarray:
        return self.whole_n if span == "whole" else self.cont_n


def check_scoring(norm: str, span: str) -> None:
    if norm not in NORMS:
        raise ConfigError("must be 'mean' or 'sum'", field="norm", value=norm)
    if span not in SPANS:
        raise ConfigError("must be 'whole' or 'continuation'", field="span", value=span)


def encode_segments(segments: list[dict], tokenizer, vocab, *, item: str = "?") -> Encoded:
    """Token ids of a segment list: a marker opens the sequence and every modality switch."""
    if not segments:
        raise ConfigError(f"item {item}: no segments", field="segments")
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
        _check_segment(seg, item=item, k=k)
        if mod == "speech":
            try:
                ids.extend(vocab.units_to_ids(seg["units"]))
            except ConfigError as e:
                raise ConfigError(f"item {item}: {e}") from None
        else:
            # words after the first carry their space, after a marker too (as the interleaved stream does)
            text = seg["text"] if k == 0 else " " + seg["text"]
            ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        prev = mod
    return Encoded(ids, cont_start)


def _check_segment(seg: dict, *, item: str, k: int) -> str:
    mod = seg.get("modality")
    if mod not in ("speech", "text"):
        raise ConfigError(f"item {item}: segment {k}: unknown modality", field="modality", value=mod)
    if mod == "speech":
        if not seg.get("units"):
            raise ConfigError(f"item {item}: segment {k}: speech segment without units", field="units",
                              value=seg.get("units"))
    elif not isinstance(seg.get("text"), str) or not seg["text"].strip():
        raise ConfigError(f"item {item}: segment {k}: text segment without text", field="text", value=seg.get("text"))
    return mod


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids a tokenizer adds before and after a text when asked for special tokens (a Llama BOS;
    nothing for Qwen): SlamKit tokenises every sequence that way."""
    with_sp = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    for i in range(len(with_sp) - len(plain) + 1):
        if with_sp[i:i + len(plain)] == plain:
            return list(with_sp[:i]), list(with_sp[i + len(plain):])
    raise ConfigError("cannot locate the text inside the tokenizer's special-token frame", field="tokenizer")


def encode_slamkit(segments: list[dict], tokenizer, vocab, *, item: str = "?", cross_modal: bool = False,
                   frame: tuple[list[int], list[int]] | None = None) -> Encoded:
    """Token ids as SlamKit builds them (``InterleavingTokeniser``): a speech-only item of a speech
    benchmark is its units alone; an interleaved (or cross-modal) item opens every run of one modality
    with its marker; consecutive text segments are joined as written and tokenised together; the whole
    sequence sits inside the tokenizer's special tokens (``frame``, from :func:`special_tokens`)."""
    if not segments:
        raise ConfigError(f"item {item}: no segments", field="segments")
    mods = [_check_segment(s, item=item, k=k) for k, s in enumerate(segments)]
    pre, post = frame if frame is not None else special_tokens(tokenizer)
    ids = list(pre)
    if all(m == "speech" for m in mods) and not cross_modal:
        for s in segments:
            ids.extend(vocab.units_to_ids(s["units"]))
        return Encoded(ids + list(post), 0)
    k = 0
    while k < len(segments):
        j = k
        while j < len(segments) and mods[j] == mods[k]:
            j += 1
        run = segments[k:j]
        if mods[k] == "speech":
            ids.append(vocab.speech)
            for s in run:
                ids.extend(vocab.units_to_ids(s["units"]))
        else:
            ids.append(vocab.text)
            ids.extend(tokenizer("".join(s["text"] for s in run), add_special_tokens=False)["input_ids"])
        k = j
    return Encoded(ids + list(post), 0)


def _autocast(device: torch.device):
    # bf16 on GPU (as in training), exact fp32 on CPU
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


MAX_BATCH_TOKENS = 65536  # rows x width of one scoring forward: bounds evaluation memory at any length


def _batches(order: list[int], lengths: list[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Consecutive runs of ``order`` (sorted by length) with at most ``batch_size`` rows and at most
    ``max_tokens`` padded tokens each (a single longer sequence is a batch of its own)."""
    out, cur = [], []
    for i in order:
        if cur and (len(cur) == batch_size or (len(cur) + 1) * max(lengths[i], lengths[cur[-1]]) > max_tokens):
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out


# Packed scoring (trainer.eval.packing), tuned with benchmarks/bench_eval.py on toy models (CPU): narrow
# rows keep the attention cost of short items low, and the token budget (not a row count) bounds a forward
# (its 4D mask is rows x width^2 booleans).
ROW_TOKENS = 64
PACKED_BATCH_TOKENS = 8192


def can_pack(model) -> bool:
    """Packed prefix-tree rows need an HF decoder (hidden states + LM head) whose attention takes an
    explicit 4D mask: SDPA. FlashAttention / eager models are scored plainly (one padded row each)."""
    from trainer.kernels.chunked_ce import _unwrap

    base = _unwrap(model)
    return (hasattr(base, "lm_head") and hasattr(base, "model")
            and getattr(getattr(base, "config", None), "_attn_implementation", None) == "sdpa")


# no_grad, not inference_mode: under FSDP2 the gathered parameters allocated in an inference-mode forward
# are inference tensors, and the next training forward that reuses them fails ("Inference tensors do not
# track version counter"); evaluation runs in the middle of training, on the training model
@torch.no_grad()
def sequence_nll(model, seqs: list[Encoded], *, batch_size: int = 32, device=None,
                 groups: list[tuple[int, ...]] | None = None, packed: bool | None = None) -> SequenceNLL:
    """NLL of every sequence.

    Identical sequences are scored once, so they always get identical NLLs (an exact tie).
    Sums are accumulated in float64 so equal per-token losses give equal means at any length.
    ``packed`` (default: whenever :func:`can_pack`): the sequences of each of ``groups`` (index tuples,
    e.g. the two members of a pair) share their common prefix, and short groups share a row
    (``trainer.eval.packing``), a forward bounded by ``PACKED_BATCH_TOKENS`` (``batch_size`` is not used);
    the scores equal the plain path's to float rounding. Plain: batched by
    length (right padding + attention mask), at most ``batch_size`` rows and ``MAX_BATCH_TOKENS``.
    The loss is the training loss path's LM head (chunked: never [tokens, vocab] float32 logits),
    and under ``torch.distributed`` each rank scores every world-th batch (all ranks run the same
    number of forwards, as FSDP needs) and the per-sequence sums are all-reduced: every rank
    returns the same, complete result.
    """
    if batch_size < 1:
        raise ConfigError("must be >= 1", field="batch_size", value=batch_size)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    n = len(seqs)
    key_of: dict[tuple, int] = {}
    uniq: list[Encoded] = []
    where = np.empty(n, dtype=np.int64)
    for i, s in enumerate(seqs):
        k = (tuple(s.ids), s.cont_start)
        if k not in key_of:
            key_of[k] = len(uniq)
            uniq.append(s)
        where[i] = key_of[k]
    if packed is None:
        packed = can_pack(model)
    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, n_ranks = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if dist else (0, 1)
    # per unique sequence: whole sum, whole count, continuation sum, continuation count
    acc = torch.zeros(4, len(uniq), dtype=torch.float64, device=device)
    batches, step = (_packed if packed else _plain)(model, uniq, where, groups, batch_size, device)
    try:
        for k in range(-(-len(batches) // n_ranks)):
            j = k * n_ranks + rank
            # past the end: a padding forward (all ranks run the same number, as FSDP needs), result dropped
            step(batches[min(j, len(batches) - 1)], acc if j < len(batches) else None)
    finally:
        from trainer.parallel import reshard

        reshard(model)  # evaluation runs on the training model: leave nothing gathered (see reshard)
    if n_ranks > 1:  # each sequence was scored by exactly one rank, the others hold zeros: the sum is exact
        torch.distributed.all_reduce(acc)
    a = acc.cpu().numpy()
    ws, wn, cs, cn = a[0], a[1].astype(np.int64), a[2], a[3].astype(np.int64)
    return SequenceNLL(ws[where], wn[where], cs[where], cn[where])


def _plain(model, uniq: list[Encoded], where, groups, batch_size: int, device, only=None):
    """One padded row per sequence (of ``only``, default all), length-bucketed: (batches,
    ``step(batch, acc)``), a step adding its sums into ``acc`` (``acc=None``: the forward only)."""
    from trainer.kernels.chunked_ce import token_nll

    lengths = [len(s.ids) for s in uniq]
    # length bucketing (little padding); a sequence of < 2 tokens predicts nothing and is not run
    order = sorted((i for i in (range(len(uniq)) if only is None else only) if lengths[i] >= 2), key=lambda i: lengths[i])
    batches = _batches(order, lengths, batch_size, max(MAX_BATCH_TOKENS, 2))

    def step(idx, acc):
        width = max(lengths[i] for i in idx)
        ids = torch.zeros(len(idx), width, dtype=torch.long)
        mask = torch.zeros(len(idx), width, dtype=torch.long)
        start = torch.zeros(len(idx), 1, dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, :lengths[i]] = torch.tensor(uniq[i].ids, dtype=torch.long)
            mask[r, :lengths[i]] = 1
            start[r, 0] = max(uniq[i].cont_start, 1)
        ids, mask, start = ids.to(device), mask.to(device), start.to(device)
        with _autocast(device):
            nll = token_nll(model, ids, {"attention_mask": mask}).double()
        if acc is None:
            return
        valid = mask[:, 1:].bool()  # causal attention: a valid position never sees the right padding
        nll = torch.where(valid, nll, torch.zeros_like(nll))
        pos = torch.arange(1, width, device=device).unsqueeze(0)
        cont = valid & (pos >= start)
        rows = torch.tensor(idx, device=device)
        acc[0, rows] = nll.sum(1)
        acc[1, rows] = valid.sum(1).double()
        acc[2, rows] = (nll * cont).sum(1)
        acc[3, rows] = cont.sum(1).double()
    return batches, step


def _packed(model, uniq: list[Encoded], where, groups, batch_size: int, device):
    """Prefix trees of the groups, packed into rows (``trainer.eval.packing``); (batches, step) as above.
    A sequence that would sit alone in its row (no shared prefix, longer than half a row) takes the
    plain path."""
    from trainer.eval.packing import build_batch, gathered_nll, make_tree, pack_batches
    from trainer.kernels.chunked_ce import decoder_hidden

    owner = np.full(len(uniq), -1, dtype=np.int64)  # a unique sequence joins the first group it is in
    members: list[tuple[int, ...]] = []
    for g in groups or ():
        m = tuple(dict.fromkeys(int(where[i]) for i in g if owner[where[i]] < 0))
        if m:
            owner[list(m)] = len(members)
            members.append(m)
    members += [(i,) for i in np.nonzero(owner < 0)[0].tolist()]
    trees, alone = [], []
    for m in members:
        t = make_tree(m, [uniq[i].ids for i in m])
        # attention costs width^2 a row (the mask does not skip work), and a masked row is dearer than a
        # plain causal one: only a long common prefix (a StoryCloze story, not sBLIMP's sentence start)
        # pays for a tree
        prefix = int((t.branch == 0).sum())
        if len(m) > 1 and (prefix < ROW_TOKENS or len(t) ** 2 > sum(len(uniq[i].ids) ** 2 for i in m)):
            m = [(i,) for i in m]
            t = None
        for mm in ([m] if t is not None else m):
            if len(mm) == 1 and len(uniq[mm[0]].ids) > ROW_TOKENS // 2:
                alone.append(mm[0])  # shares neither a prefix nor a row: a plain row is cheaper (no 4D mask)
            else:
                trees.append(t if t is not None else make_tree(mm, [uniq[mm[0]].ids]))
    trees = [t for t in trees if (t.parent >= 0).any()]  # nothing to predict (1-token sequences): no row
    cont_start = [s.cont_start for s in uniq]
    packed = pack_batches(trees, row_tokens=ROW_TOKENS, max_tokens=PACKED_BATCH_TOKENS, max_rows=PACKED_BATCH_TOKENS)
    plain, plain_step = _plain(model, uniq, where, groups, batch_size, device, only=alone)
    batches = [(True, b) for b in packed] + [(False, b) for b in plain]

    def step(batch, acc):
        is_tree, rows = batch
        if not is_tree:
            return plain_step(rows, acc)
        b = build_batch(rows, trees, cont_start, device)
        with _autocast(device):
            hidden, weight = decoder_hidden(model, b.ids, b.inputs)
            nll = gathered_nll(hidden, weight, b.hid, b.target).double()
        if acc is None:
            return
        part = nll[b.tok]
        one = torch.ones_like(part)
        acc[0].index_add_(0, b.seq, part)
        acc[1].index_add_(0, b.seq, one)
        acc[2].index_add_(0, b.seq, part * b.cont)
        acc[3].index_add_(0, b.seq, one * b.cont)
    return batches, step


def pair_scores(nll_pos: np.ndarray, nll_neg: np.ndarray) -> np.ndarray:
    """1 where the positive has the lower NLL, 0.5 on an exact tie, else 0."""
    nll_pos, nll_neg = np.asarray(nll_pos), np.asarray(nll_neg)
    return np.where(nll_pos < nll_neg, 1.0, np.where(nll_pos == nll_neg, 0.5, 0.0))


def score_pairs(model, pairs: list[tuple[Encoded, Encoded]], *, norm: str = "mean", span: str = "whole",
                batch_size: int = 32) -> np.ndarray:
    check_scoring(norm, span)
    seqs = [p for pair in pairs for p in pair]
    groups = [(2 * k, 2 * k + 1) for k in range(len(pairs))]
    val = sequence_nll(model, seqs, batch_size=batch_size, groups=groups).value(norm, span)
    return pair_scores(val[0::2], val[1::2])
