"""``attn_implementation="varlen"`` (trainer.kernels.varlen): packed documents isolated by cumulative
offsets, with no dense mask. On CPU the reference path runs; the CUDA kernel call is checked against
a CPU stand-in of ``torch.nn.attention.varlen.varlen_attn`` with its documented semantics."""
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

import trainer.kernels.varlen as vl
from helpers.scale_refs import per_document_loss
from scaling.shapes import DEMO, ModelShape
from trainer.attention import packed_inputs
from trainer.kernels.chunked_ce import lm_loss
from trainer.model import build_model

EOS = 5
QWEN = DEMO["toy-xs"].with_vocab(256)
LLAMA = ModelShape(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=1, intermediate_size=96, vocab_size=256,
                   tie_embeddings=False, qkv_bias=False, family="llama")


def _batch(seed: int = 0, cuts=((7, 19, 30), (3, 7, 19, 30), ())) -> torch.Tensor:
    """3 rows of 40: several documents with the last one cut by the row end, a one-token document,
    and a row that is one document."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(EOS + 1, 200, (len(cuts), 40), generator=g)
    for r, cs in enumerate(cuts):
        ids[r, list(cs)] = EOS
    return ids


def _valid(ids):
    return torch.ones(ids.shape[0], ids.shape[1] - 1, dtype=torch.bool)


def _loss(model, ids, attn, *, doc_mask=True):
    flat_ids, flat_valid, extra = packed_inputs(ids, _valid(ids), EOS, attn=attn, doc_mask=doc_mask)
    return lm_loss(model, flat_ids, flat_valid, extra, chunked=False), flat_valid.sum()


def _pair(shape):
    """A varlen and an SDPA model with the same weights."""
    varlen = build_model(shape, 0, attn="varlen")
    sdpa = build_model(shape, 1, attn="sdpa")
    sdpa.load_state_dict(varlen.state_dict())
    return varlen, sdpa


@pytest.mark.parametrize("shape", [QWEN, LLAMA], ids=["qwen2", "llama"])
def test_packed_loss_equals_per_document_losses(shape):
    assert shape.num_kv_heads < shape.num_heads  # GQA: k/v heads are shared
    model = build_model(shape, 0, attn="varlen").eval()
    ids = _batch()
    flat_ids, flat_valid, extra = packed_inputs(ids, _valid(ids), EOS, attn="varlen")
    assert flat_ids.shape == (1, ids.numel()) and int(flat_valid.sum()) == ids.shape[0] * (ids.shape[1] - 1)
    assert extra["cu_seq_lens_q"].tolist() == [0, 8, 20, 31, 40, 44, 48, 60, 71, 80, 120]
    assert extra["cu_seq_lens_q"].dtype == torch.int32 and extra["max_length_q"] == extra["max_length_k"] == 40
    with torch.no_grad():
        loss = (lm_loss(model, flat_ids, flat_valid, extra, chunked=False) / flat_valid.sum()).item()
        leaky = (lm_loss(model, ids, _valid(ids), {}, chunked=False) / _valid(ids).sum()).item()
    assert loss == pytest.approx(per_document_loss(model, ids.numpy(), EOS), rel=1e-5)
    assert leaky != pytest.approx(loss, rel=1e-4)  # the offsets matter


@pytest.mark.parametrize("doc_mask", [True, False])
def test_loss_and_gradients_equal_the_sdpa_dense_mask_path(doc_mask):
    varlen, sdpa = _pair(QWEN)
    ids = _batch(1)
    if not doc_mask:  # every row one sequence: one offset per row
        assert packed_inputs(ids, _valid(ids), EOS, attn="varlen", doc_mask=False)[2]["cu_seq_lens_q"].tolist() == [0, 40, 80, 120]
    losses, grads = [], []
    for model, attn in ((varlen, "varlen"), (sdpa, "sdpa")):
        loss, n = _loss(model, ids, attn, doc_mask=doc_mask)
        loss.backward()
        losses.append(loss.item() / n.item())
        grads.append({k: p.grad for k, p in model.named_parameters()})
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    for k, g in grads[1].items():
        assert (grads[0][k] - g).norm() <= 1e-6 * g.norm(), k


def test_right_padded_rows_with_a_padding_mask_score_as_with_sdpa():
    """Evaluation's unpadded-row path (trainer.eval.scoring) passes a 2D padding mask: varlen drops it,
    exactly, for right padding (causal attention never looks right)."""
    from trainer.kernels.chunked_ce import token_nll

    varlen, sdpa = _pair(QWEN)
    ids = _batch(2)
    mask = torch.ones_like(ids)
    mask[0, 30:] = 0
    mask[2, 12:] = 0
    a, b = (token_nll(m, ids, {"attention_mask": mask}) for m in (varlen, sdpa))
    valid = mask[:, 1:].bool()
    torch.testing.assert_close(a[valid], b[valid], rtol=1e-5, atol=1e-6)


def test_no_dense_mask_on_the_varlen_path(monkeypatch):
    """transformers' mask function gives None, the attention gets no mask, and with the kernel branch
    (a stand-in) no tensor anywhere in the forward is [.., N, N] over the packed tokens."""
    seen = {"masks": [], "attention_masks": []}
    mask_fn, attn_fn = AttentionMaskInterface._global_mapping["varlen"], AttentionInterface._global_mapping["varlen"]

    def spy_mask(*a, **kw):
        out = mask_fn(*a, **kw)
        seen["masks"].append(out)
        return out

    def spy_attn(module, q, k, v, attention_mask, **kw):
        seen["attention_masks"].append(attention_mask)
        return attn_fn(module, q, k, v, attention_mask, **kw)

    monkeypatch.setitem(AttentionMaskInterface._global_mapping, "varlen", spy_mask)
    monkeypatch.setitem(AttentionInterface._global_mapping, "varlen", spy_attn)
    for other in ("sdpa", "eager"):  # no other mask builder may run either
        monkeypatch.setitem(AttentionMaskInterface._global_mapping, other, lambda *a, **kw: pytest.fail("dense mask"))
    stand_in = _StandIn()
    _force_kernel(monkeypatch, stand_in, dtypes=(torch.float32,))

    from torch.utils._python_dispatch import TorchDispatchMode

    class Shapes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.shapes = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.shapes.append(tuple(t.shape))
            return out

    model = build_model(QWEN, 0, attn="varlen").eval()
    ids = _batch()
    flat_ids, flat_valid, extra = packed_inputs(ids, _valid(ids), EOS, attn="varlen")
    assert "attention_mask" not in extra
    n = flat_ids.shape[1]
    with torch.no_grad(), Shapes() as mode:
        lm_loss(model, flat_ids, flat_valid, extra, chunked=False)
    assert seen["masks"] == [None] and seen["attention_masks"] == [None] * QWEN.num_layers
    assert len(stand_in.calls) == QWEN.num_layers  # the kernel branch ran
    assert mode.shapes and not [s for s in mode.shapes if len(s) >= 2 and s[-1] == s[-2] == n]


def test_compiled_layers_trace_whole_and_do_not_recompile_on_new_boundaries():
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    model = build_model(QWEN, 0, attn="varlen")
    eager = build_model(QWEN, 0, attn="varlen")
    counter = CompileCounterWithBackend("aot_eager")
    for layer in model.model.layers:
        layer.compile(backend=counter, fullgraph=True)  # fullgraph: any graph break is an error
    batches = [_batch(0), _batch(1, cuts=((5, 25), (10,), (1, 2, 3, 36))), _batch(2, cuts=((), (20,), ()))]
    frames = []
    try:
        for ids in batches:
            loss, _ = _loss(model, ids, "varlen")
            loss.backward()
            frames.append(counter.frame_count)
            with torch.no_grad():
                assert loss.item() == pytest.approx(_loss(eager, ids, "varlen")[0].item(), rel=1e-6)
    finally:
        torch._dynamo.reset()
    assert frames[0] >= 1 and frames == [frames[0]] * len(batches), frames  # new boundaries and counts: no recompile


class _StandIn:
    """CPU stand-in for torch's varlen_attn with its documented semantics: [total, heads, dim] q/k/v,
    sequences cut by cu_seq offsets, causal for window (-1, 0), k/v heads shared by GQA groups."""

    def __init__(self):
        self.calls = []

    def __call__(self, q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False, **kw):
        self.calls.append(dict(q=q.shape, k=k.shape, dtypes={q.dtype, k.dtype, v.dtype}, cu_q=cu_q, cu_k=cu_k,
                               max_q=max_q, max_k=max_k, scale=scale, window=tuple(window_size), gqa=enable_gqa))
        assert enable_gqa or q.shape[1] == k.shape[1]
        rep = q.shape[1] // k.shape[1]
        bounds = cu_q.tolist()
        assert bounds == cu_k.tolist() and bounds[-1] == q.shape[0]
        out = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            assert b - a <= max_q
            qs, ks, vs = (t[a:b].transpose(0, 1) for t in (q, k, v))
            ks, vs = ks.repeat_interleave(rep, 0), vs.repeat_interleave(rep, 0)
            out.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=tuple(window_size) == (-1, 0),
                                                      scale=scale).transpose(0, 1))
        return torch.cat(out)


def _force_kernel(monkeypatch, stand_in, dtypes=None):
    monkeypatch.setattr(vl, "varlen_attn", stand_in)
    monkeypatch.setattr(vl, "KERNEL_DEVICES", ("cuda", "cpu"))
    if dtypes is not None:
        monkeypatch.setattr(vl, "KERNEL_DTYPES", dtypes)


def test_kernel_branch_calls_varlen_attn_with_offsets_causal_window_and_native_gqa(monkeypatch):
    assert vl.varlen_available("cpu") is not None  # the fast kernel is CUDA-only...
    varlen, _ = _pair(QWEN)
    ids = _batch()
    ref, _ = _loss(varlen, ids, "varlen")  # the reference path (CPU, fp32)
    ref.backward()
    ref_grads = {k: p.grad.clone() for k, p in varlen.named_parameters()}
    varlen.zero_grad()
    stand_in = _StandIn()
    _force_kernel(monkeypatch, stand_in, dtypes=(torch.float32, torch.bfloat16, torch.float16))  # ...forced here
    loss, _ = _loss(varlen, ids, "varlen")
    loss.backward()
    assert len(stand_in.calls) == QWEN.num_layers
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    for k, p in varlen.named_parameters():
        assert (p.grad - ref_grads[k]).norm() <= 1e-5 * ref_grads[k].norm(), k
    head_dim = QWEN.hidden_size // QWEN.num_heads
    for c in stand_in.calls:
        assert c["q"] == (ids.numel(), QWEN.num_heads, head_dim)
        assert c["k"] == (ids.numel(), QWEN.num_kv_heads, head_dim)  # no repeat_kv
        assert c["cu_q"].dtype == c["cu_k"].dtype == torch.int32
        assert c["window"] == (-1, 0) and c["gqa"] is True
        assert c["max_q"] == c["max_k"] == ids.shape[1]
        assert c["scale"] == pytest.approx(head_dim ** -0.5)
    # under autocast, q/k leave the rotary embedding in fp32: the kernel gets all three in bf16
    monkeypatch.setattr(vl, "KERNEL_DTYPES", (torch.float16, torch.bfloat16))
    stand_in.calls.clear()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        _loss(varlen, ids, "varlen")
    assert stand_in.calls and all(c["dtypes"] == {torch.bfloat16} for c in stand_in.calls)


def test_build_meta_and_load_model_register_varlen_in_a_fresh_process(tmp_path):
    """The name is registered before transformers validates it, with nothing imported beforehand."""
    code = f"""
import torch
from scaling.shapes import DEMO
from trainer.model import build_meta, build_model, load_model
m = build_model(DEMO["toy-xs"].with_vocab(256), 0, attn="varlen")
m.save_pretrained({str(tmp_path)!r})
assert load_model({str(tmp_path)!r}, attn="varlen").config._attn_implementation == "varlen"
assert build_meta(m.config, dtype=torch.float32, attn="varlen").config._attn_implementation == "varlen"
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
