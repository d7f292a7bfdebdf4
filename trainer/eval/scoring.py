"""Pairwise likelihood scoring: the shared mechanics of sWUGGY, sBLIMP and (s/t)StoryCloze.

A pair scores 1 if the model gives the positive member the lower NLL, 0.5 on a tie, else 0.
Normalisation ``mean`` (per-token NLL, the published default) or ``sum``; span ``whole``
(every predicted token) or ``continuation`` (only the last segment, e.g. a story's ending).
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from scaling.errors import ConfigError

NORMS = ("mean", "sum")
SPANS = ("whole", "continuation")
#: How a pair member becomes token ids (docs/explanation/scoring.md). ``ours``: a modality marker opens
#: every sequence and every switch, a space before every text segment after the first. ``slamkit``:
#: SlamKit's encoding (speech-only items carry no marker, text segments joined as written, the text
#: tokenizer's own special tokens such as a Llama BOS around the whole sequence).
CONVENTIONS = ("ours", "slamkit")
#: SlamKit's two tokenisers: ``interleaved`` (``InterleavingTokeniser``: a text tokenizer + ``<UnK>``,
#: ``<speech>``, ``<text>``; a speech-only item is its units inside the text tokenizer's own special
#: tokens) and ``unit`` (``UnitTokeniser``, pure-speech models: BOS + units + EOS, one id for both).
SLAMKIT_TOKENISERS = ("interleaved", "unit")
#: SlamKit's pad id (``UnitLMConfig(pad_token_id=0)``, its tokenisers pad with 0): ``UnitLM.log_likelihood``
#: sets every label equal to it to -100, so such a token is neither scored nor counted in the mean. In
#: Qwen2.5's and Llama-3's vocabularies id 0 is ``"!"``.
SLAMKIT_PAD_ID = 0
#: Scoring precision: ``fp32`` (float32 model and logits; sums in float64) or ``bf16`` (SlamKit's: a
#: bfloat16 model, bfloat16 logits and per-token losses, a bfloat16 sum and mean).
DTYPES = ("fp32", "bf16")


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    cont_start: int  # index of the first token of the last segment (its marker when it switches modality)
    drop: int | None = None  # a label id that is neither scored nor counted (SlamKit: its pad id)


@dataclass(frozen=True)
class SlamkitRules:
    """What ``--convention slamkit`` follows besides the encoding itself: the tokeniser kind of the
    model, the label SlamKit drops (its pad id), and the unit tokeniser's BOS/EOS id.
    ``source``: where the tokeniser kind came from (``default``, ``checkpoint``, ``option``)."""

    tokeniser: str = "interleaved"
    label_drop_id: int | None = SLAMKIT_PAD_ID
    bos_eos: int | None = None  # unit tokeniser only
    source: str = "default"

    def settings(self, tokenizer=None) -> dict:
        """The JSON settings of the output (SlamKit's behaviour, stated; not choices)."""
        out = {"slamkit_tokeniser": self.tokeniser, "slamkit_tokeniser_from": self.source,
               "label_drop_id": self.label_drop_id}
        if tokenizer is not None and self.label_drop_id is not None and self.label_drop_id < len(tokenizer):
            out["label_drop_token"] = tokenizer.convert_ids_to_tokens(self.label_drop_id)
        if self.tokeniser == "unit":
            out["bos_eos_id"] = self.bos_eos
        out["speech_join"] = "dedup"  # units of consecutive speech segments: a repeat across the join collapses
        return out


def _conv_get(conv, *keys):
    """(found, value) of the first of ``keys`` that ``conv`` (a mapping or an object) holds."""
    for k in keys:
        if isinstance(conv, Mapping):
            if k in conv:
                return True, conv[k]
        elif hasattr(conv, k):
            return True, getattr(conv, k)
    return False, None


def checkpoint_conventions(checkpoint):
    """The tokenizer conventions a SlamKit checkpoint folder records, through
    ``trainer.slamkit_ckpt.slamkit_conventions(folder)`` when that module exists (None otherwise, or for a
    folder that is not a SlamKit checkpoint)."""
    if checkpoint is None:
        return None
    try:
        from trainer.slamkit_ckpt import slamkit_conventions
    except ImportError:
        return None
    return slamkit_conventions(checkpoint) or None


def slamkit_rules(tokenizer, *, tokeniser: str | None = None, checkpoint=None, conventions=None) -> SlamkitRules:
    """The :class:`SlamkitRules` of a model: the tokeniser kind from ``tokeniser`` (an option), else the
    checkpoint's conventions (``conventions``, or read from ``checkpoint``), else ``interleaved``; the
    dropped label is the checkpoint's pad id (SlamKit's default 0); the unit tokeniser's BOS/EOS id is
    the checkpoint's, else the tokenizer's BOS."""
    if tokeniser is not None and tokeniser not in SLAMKIT_TOKENISERS:
        raise ConfigError(f"unknown SlamKit tokeniser; known: {list(SLAMKIT_TOKENISERS)}", field="slamkit_tokeniser",
                          value=tokeniser)
    conv = conventions if conventions is not None else checkpoint_conventions(checkpoint)
    kind, source = tokeniser, "option"
    if kind is None and conv is not None:
        found, v = _conv_get(conv, "tokeniser", "tokeniser_type", "tokenizer", "tokenizer_type", "kind")
        if found and v is not None:
            v = str(v).lower()
            kind = "unit" if v.startswith("unit") else "interleaved" if v.startswith("interleav") else None
            if kind is None:
                raise ConfigError(f"unknown SlamKit tokeniser type in the checkpoint; known: {list(SLAMKIT_TOKENISERS)}",
                                  source=str(checkpoint) if checkpoint else None, field="tokeniser_type", value=v)
            source = "checkpoint"
    if kind is None:
        kind, source = "interleaved", "default"
    drop = SLAMKIT_PAD_ID
    if conv is not None:
        found, v = _conv_get(conv, "label_drop_id", "pad_token_id")
        if found:
            drop = None if v is None else int(v)
    bos = None
    if kind == "unit":
        found, v = _conv_get(conv, "bos_eos_token_id", "bos_token_id") if conv is not None else (False, None)
        bos = int(v) if found and v is not None else tokenizer.bos_token_id
        if bos is None:
            raise ConfigError("SlamKit's unit tokeniser puts one BOS/EOS token around the units, and this tokenizer "
                              "has no bos_token (a SlamKit unit model's is <S>, id 1)", field="slamkit_tokeniser",
                              value=kind)
    return SlamkitRules(kind, drop, bos, source)


@dataclass(frozen=True)
class SequenceNLL:
    """Per sequence: summed NLL (float64) and number of predicted tokens, whole and continuation.
    ``bf16``: the per-token losses were bfloat16 (``dtype="bf16"``), and :meth:`value` rounds as SlamKit's
    ``calc_nll`` on bfloat16 tensors does: the sum to bfloat16, then the mean = bf16 sum / count in bfloat16."""

    whole_sum: np.ndarray
    whole_n: np.ndarray
    cont_sum: np.ndarray
    cont_n: np.ndarray
    bf16: bool = False

    def value(self, norm: str = "mean", span: str = "whole") -> np.ndarray:
        check_scoring(norm, span)
        tot, cnt = (self.whole_sum, self.whole_n) if span == "whole" else (self.cont_sum, self.cont_n)
        if self.bf16:
            t = torch.from_numpy(np.asarray(tot, dtype=np.float64)).to(torch.bfloat16)
            if norm == "mean":  # bf16 / int64 -> bf16 (the count rounded to bf16 first), as torch does in SlamKit
                t = t / torch.from_numpy(np.maximum(np.asarray(cnt, dtype=np.int64), 1))
            return t.double().numpy()
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


def join_units(run: list[dict]) -> list[int]:
    """The units of consecutive speech segments as one list, a repeat across each join collapsed: SlamKit
    extracts (deduplicated) units from the joined audio, where the ending's first unit merges with the
    prompt's last when they are equal."""
    out: list[int] = []
    for s in run:
        u = [int(x) for x in s["units"]]
        k = 0
        while out and k < len(u) and u[k] == out[-1]:
            k += 1
        out += u[k:]
    return out


def encode_slamkit(segments: list[dict], tokenizer, vocab, *, item: str = "?", cross_modal: bool = False,
                   frame: tuple[list[int], list[int]] | None = None, rules: SlamkitRules | None = None) -> Encoded:
    """Token ids as SlamKit builds them, for the tokeniser of ``rules`` (default: interleaved).

    ``interleaved`` (``InterleavingTokeniser``): a speech-only item of a speech benchmark is its units
    alone; an interleaved (or cross-modal) item opens every run of one modality with its marker;
    consecutive text segments are joined as written and tokenised together; the whole sequence sits
    inside the tokenizer's special tokens (``frame``, from :func:`special_tokens`).
    ``unit`` (``UnitTokeniser``, speech only): BOS + units + EOS (one id for both).
    Either way the units of consecutive speech segments are joined with a repeat across the join
    collapsed (:func:`join_units`), and the label ``rules.label_drop_id`` is not scored (``Encoded.drop``)."""
    rules = rules or SlamkitRules()
    if not segments:
        raise ConfigError(f"item {item}: no segments", field="segments")
    mods = [_check_segment(s, item=item, k=k) for k, s in enumerate(segments)]

    def unit_ids(run):
        try:
            return vocab.units_to_ids(join_units(run))
        except ConfigError as e:
            raise ConfigError(f"item {item}: {e}") from None

    if rules.tokeniser == "unit":
        if any(m != "speech" for m in mods):
            raise ConfigError(f"item {item}: SlamKit's unit tokeniser (a pure-speech model) reads speech only, and this "
                              "item has text; score text benchmarks with an interleaved model", field="modality",
                              value="text")
        return Encoded([rules.bos_eos] + unit_ids(segments) + [rules.bos_eos], 0, rules.label_drop_id)
    pre, post = frame if frame is not None else special_tokens(tokenizer)
    ids = list(pre)
    if all(m == "speech" for m in mods) and not cross_modal:
        return Encoded(ids + unit_ids(segments) + list(post), 0, rules.label_drop_id)
    k = 0
    while k < len(segments):
        j = k
        while j < len(segments) and mods[j] == mods[k]:
            j += 1
        run = segments[k:j]
        if mods[k] == "speech":
            ids.append(vocab.speech)
            ids.extend(unit_ids(run))
        else:
            ids.append(vocab.text)
            ids.extend(tokenizer("".join(s["text"] for s in run), add_special_tokens=False)["input_ids"])
        k = j
    return Encoded(ids + list(post), 0, rules.label_drop_id)


def _autocast(device: torch.device, dtype: str | None = None):
    # dtype None: bf16 autocast on GPU (as in training), exact fp32 on CPU; an explicit dtype: no autocast
    if dtype is None and device.type == "cuda":
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
                 groups: list[tuple[int, ...]] | None = None, packed: bool | None = None,
                 dtype: str | None = None) -> SequenceNLL:
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
    A label equal to a sequence's ``drop`` id is neither scored nor counted (SlamKit's pad-id rule).
    ``dtype``: None, bf16 autocast on GPU and float32 on CPU (training's evaluation); ``"fp32"``, a
    float32 model without autocast; ``"bf16"``, SlamKit's precision: a bfloat16 model (the caller casts it)
    scored one plain row per sequence without an attention mask (right padding is invisible to a causal
    decoder), bfloat16 logits and per-token losses, and :attr:`SequenceNLL.bf16` rounding of the sum and
    the mean.
    """
    if batch_size < 1:
        raise ConfigError("must be >= 1", field="batch_size", value=batch_size)
    if dtype is not None:
        if dtype not in DTYPES:
            raise ConfigError(f"unknown scoring dtype; known: {list(DTYPES)}", field="dtype", value=dtype)
        want = torch.bfloat16 if dtype == "bf16" else torch.float32
        have = next(model.parameters()).dtype
        if have != want:
            raise ConfigError(f"dtype {dtype} scores a {want} model, and this one is {have}; cast it first "
                              f"(model.to({want}))", field="dtype", value=dtype)
        if dtype == "bf16":
            packed = False  # one row per sequence, as SlamKit scores it
    device = torch.device(device) if device is not None else next(model.parameters()).device
    n = len(seqs)
    key_of: dict[tuple, int] = {}
    uniq: list[Encoded] = []
    where = np.empty(n, dtype=np.int64)
    for i, s in enumerate(seqs):
        k = (tuple(s.ids), s.cont_start, s.drop)
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
    batches, step = (_packed if packed else _plain)(model, uniq, where, groups, batch_size, device, dtype=dtype)
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
    return SequenceNLL(ws[where], wn[where], cs[where], cn[where], bf16=dtype == "bf16")


def _drop_ids(uniq: list[Encoded], device) -> torch.Tensor:
    """Per unique sequence: its dropped label id (-1: none, never a token id)."""
    return torch.tensor([-1 if s.drop is None else s.drop for s in uniq], dtype=torch.long, device=device)


@torch.no_grad()
def token_nll_bf16(model, ids: torch.Tensor, *, chunk_size: int = 4096) -> torch.Tensor:
    """Per-position next-token NLL [B, T-1] in bfloat16 of a bfloat16 model, as SlamKit computes it
    (``calc_nll``: ``cross_entropy`` on the model's bfloat16 logits, reduction none), with no attention
    mask (``UnitLM.log_likelihood`` passes none). A decoder with an LM head applies the head in chunks of
    rows (bfloat16 logits, never all of them at once); another model returns its own ``.logits``."""
    import torch.nn.functional as F

    from trainer.kernels.chunked_ce import _unwrap, decoder_hidden

    base = _unwrap(model)
    B, T = ids.shape
    tgt = ids[:, 1:].reshape(-1)
    if hasattr(base, "lm_head") and hasattr(base, "model") and getattr(base.lm_head, "bias", None) is None:
        hidden, weight = decoder_hidden(model, ids)
        h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        out = torch.empty(h.shape[0], dtype=torch.bfloat16, device=h.device)
        for s in range(0, h.shape[0], chunk_size):
            e = min(s + chunk_size, h.shape[0])
            out[s:e] = F.cross_entropy(F.linear(h[s:e], weight), tgt[s:e], reduction="none")
        return out.view(B, T - 1)
    logits = model(input_ids=ids).logits
    flat = logits[:, :-1].reshape(-1, logits.shape[-1]).contiguous()
    return F.cross_entropy(flat, tgt, reduction="none").view(B, T - 1)


def _plain(model, uniq: list[Encoded], where, groups, batch_size: int, device, only=None, dtype=None):
    """One padded row per sequence (of ``only``, default all), length-bucketed: (batches,
    ``step(batch, acc)``), a step adding its sums into ``acc`` (``acc=None``: the forward only)."""
    from trainer.kernels.chunked_ce import token_nll

    lengths = [len(s.ids) for s in uniq]
    # length bucketing (little padding); a sequence of < 2 tokens predicts nothing and is not run
    order = sorted((i for i in (range(len(uniq)) if only is None else only) if lengths[i] >= 2), key=lambda i: lengths[i])
    batches = _batches(order, lengths, batch_size, max(MAX_BATCH_TOKENS, 2))
    drops = _drop_ids(uniq, device)

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
        if dtype == "bf16":
            nll = token_nll_bf16(model, ids).double()
        else:
            with _autocast(device, dtype):
                nll = token_nll(model, ids, {"attention_mask": mask}).double()
        if acc is None:
            return
        rows = torch.tensor(idx, device=device)
        valid = mask[:, 1:].bool()  # causal attention: a valid position never sees the right padding
        valid &= ids[:, 1:] != drops[rows].unsqueeze(1)  # the dropped label: not scored, not counted
        nll = torch.where(valid, nll, torch.zeros_like(nll))
        pos = torch.arange(1, width, device=device).unsqueeze(0)
        cont = valid & (pos >= start)
        acc[0, rows] = nll.sum(1)
        acc[1, rows] = valid.sum(1).double()
        acc[2, rows] = (nll * cont).sum(1)
        acc[3, rows] = cont.sum(1).double()
    return batches, step


def _packed(model, uniq: list[Encoded], where, groups, batch_size: int, device, dtype=None):
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
    plain, plain_step = _plain(model, uniq, where, groups, batch_size, device, only=alone, dtype=dtype)
    batches = [(True, b) for b in packed] + [(False, b) for b in plain]
    drops = _drop_ids(uniq, device)

    def step(batch, acc):
        is_tree, rows = batch
        if not is_tree:
            return plain_step(rows, acc)
        b = build_batch(rows, trees, cont_start, device)
        with _autocast(device, dtype):
            hidden, weight = decoder_hidden(model, b.ids, b.inputs)
            nll = gathered_nll(hidden, weight, b.hid, b.target).double()
        if acc is None:
            return
        one = (b.target[b.tok] != drops[b.seq]).double()  # the dropped label: not scored, not counted
        part = nll[b.tok] * one
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
