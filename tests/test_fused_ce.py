"""The compiled gradient-in-forward LM head + cross-entropy (trainer/kernels/fused_ce.py) against the
plain full-logit loss, compiled and eager, in float32 / float64 / bfloat16, and through ``lm_loss``.

All tensors share d = 32, vocab = 1024 (the toy-xs model's head) and 32-row chunks so that the
compiled per-chunk function is built once per dtype for the whole file (inductor compiles on CPU
take seconds)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scaling.shapes import DEMO
from trainer.kernels import fused_ce
from trainer.kernels.chunked_ce import lm_loss
from trainer.kernels.fused_ce import compiled_ce_unavailable, compiled_lm_head_loss

D, V = 32, 1024


def _data(shape, seed=0, dtype=torch.float32):
    """hidden [*shape, D], weight [V, D], targets with some -100, a valid mask with holes."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(*shape, D, generator=g, dtype=torch.float64)
    w = torch.randn(V, D, generator=g, dtype=torch.float64) * 0.2  # logits ~ N(0, 1.1^2)
    t = torch.randint(0, V, shape, generator=g)
    t.view(-1)[::7] = -100
    m = torch.rand(shape, generator=g) < 0.75
    return h.to(dtype), w.to(dtype), t, m


def _plain(h, w, t, m):
    """The textbook loss: full logits, cross-entropy summed over the counted positions."""
    logits = h.reshape(-1, h.shape[-1]) @ w.T
    tt = torch.where(m.reshape(-1), t.reshape(-1), -100)
    return F.cross_entropy(logits, tt, ignore_index=-100, reduction="sum")


def _plain_on_bf16_logits(h, w, t, m):
    logits = (h.reshape(-1, h.shape[-1]) @ w.T).float()
    return F.cross_entropy(logits, torch.where(m.reshape(-1), t.reshape(-1), -100), ignore_index=-100, reduction="sum")


def _run(fn, h, w, t, m, scale=0.37):
    """(loss, grad hidden, grad weight) of ``fn``, with a non-unit upstream gradient."""
    h, w = h.clone().requires_grad_(), w.clone().requires_grad_()
    loss = fn(h, w, t, m)
    (loss * scale).backward()
    return loss.detach(), h.grad, w.grad


def _close(a, b, rel):
    return (a.double() - b.double()).abs().max().item() <= rel * max(b.double().abs().max().item(), 1e-30)


# (token shape, chunk_size): 4 chunks with a 4-row remainder; 3 exact chunks; chunk_size > tokens
CASES = [((100,), 32), ((96,), 32), ((2, 15), 1000)]


@pytest.mark.parametrize("compile", [True, False], ids=["compiled", "eager"])
@pytest.mark.parametrize("shape,chunk", CASES, ids=["remainder", "exact", "chunk>tokens"])
def test_float32_matches_plain_loss_and_grads(shape, chunk, compile):
    h, w, t, m = _data(shape, seed=len(shape) * 100 + shape[-1])
    got = _run(lambda *a: compiled_lm_head_loss(*a, chunk_size=chunk, compile=compile), h, w, t, m)
    ref = _run(_plain, h, w, t, m)
    assert got[0].dtype == torch.float32 and got[0].dim() == 0
    assert abs(got[0].item() - ref[0].item()) <= 1e-6 * abs(ref[0].item())
    assert _close(got[1], ref[1], 1e-6) and _close(got[2], ref[2], 1e-6)
    # ignored and masked positions get no gradient at all
    counted = (m & (t != -100)).reshape(-1)
    assert got[1].reshape(-1, D)[~counted].abs().max().item() == 0.0
    assert got[1].reshape(-1, D)[counted].abs().min().item() > 0.0
    if compile:
        assert "grad" in fused_ce._COMPILED  # the compiled wrapper ran, not an eager fallback


@pytest.mark.parametrize("compile", [True, False], ids=["compiled", "eager"])
def test_float64_matches_plain_loss_and_grads(compile):
    h, w, t, m = _data((100,), seed=1, dtype=torch.float64)
    got = _run(lambda *a: compiled_lm_head_loss(*a, chunk_size=32, compile=compile), h, w, t, m)
    ref = _run(_plain, h, w, t, m)
    assert got[0].dtype == torch.float64
    assert abs(got[0].item() - ref[0].item()) <= 1e-12 * abs(ref[0].item())
    assert _close(got[1], ref[1], 1e-12) and _close(got[2], ref[2], 1e-12)


def test_float64_gradcheck_eager():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(13, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 11, (13,), generator=g)
    t[3] = -100
    m = torch.rand(13, generator=g) < 0.7
    assert torch.autograd.gradcheck(lambda a, b: compiled_lm_head_loss(a, b, t, m, chunk_size=4, compile=False), (h, w))


@pytest.mark.parametrize("compile", [True, False], ids=["compiled", "eager"])
def test_bfloat16_inputs_and_autocast(compile):
    h, w, t, m = _data((100,), seed=3)
    ref = _run(_plain, h, w, t, m)
    fn = lambda *a: compiled_lm_head_loss(*a, chunk_size=32, compile=compile)  # noqa: E731
    # bf16 hidden and weight: bf16 matmuls, float32 softmax and sums, gradients in the input dtypes
    got = _run(fn, h.bfloat16(), w.bfloat16(), t, m)
    assert got[0].dtype == torch.float32 and got[0].dim() == 0
    assert abs(got[0].item() - ref[0].item()) <= 2e-2 * abs(ref[0].item())
    # the softmax is float32 on the bf16 logits: equal to a float32 cross-entropy of those logits
    # (a bf16 log-sum-exp would be ~1e-3 off)
    bf16_logits = _plain_on_bf16_logits(h.bfloat16(), w.bfloat16(), t, m)
    assert abs(got[0].item() - bf16_logits.item()) <= 1e-5 * abs(bf16_logits.item())
    assert got[1].dtype == torch.bfloat16 and got[2].dtype == torch.bfloat16
    assert _close(got[1], ref[1], 3e-2) and _close(got[2], ref[2], 3e-2)
    # float32 inputs under bf16 autocast (the GPU training set-up): same bf16 compute, float32 grads
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = _run(fn, h, w, t, m)
    assert auto[0].dtype == torch.float32 and auto[1].dtype == torch.float32 and auto[2].dtype == torch.float32
    assert abs(auto[0].item() - ref[0].item()) <= 2e-2 * abs(ref[0].item())
    assert abs(auto[0].item() - bf16_logits.item()) <= 1e-5 * abs(bf16_logits.item())  # it computed in bf16
    assert abs(auto[0].item() - ref[0].item()) > 1e-6 * abs(ref[0].item())
    assert _close(auto[1], ref[1], 3e-2) and _close(auto[2], ref[2], 3e-2)


@pytest.mark.parametrize("name", ["grad", "loss"])
def test_per_chunk_functions_have_no_graph_break(name):
    fn = {"grad": fused_ce._chunk_loss_and_grad, "loss": fused_ce._chunk_loss}[name]
    h, w, t, m = _data((32,), seed=4)
    for dtype in (torch.float32, torch.bfloat16):
        ex = torch._dynamo.explain(fn)(h.to(dtype), w.to(dtype), t.clamp(min=0), m)
        assert ex.graph_break_count == 0 and ex.graph_count == 1, ex.break_reasons


def test_other_token_counts_reuse_the_compiled_chunk():
    """The last chunk is padded to the chunk's row count: a new remainder compiles nothing."""
    h, w, t, m = _data((100,), seed=5)
    ref = _run(_plain, h[:70], w, t[:70], m[:70])
    _run(lambda *a: compiled_lm_head_loss(*a, chunk_size=32), h, w, t, m)  # warm: 32-row chunks
    with torch._dynamo.config.patch(error_on_recompile=True):
        got = _run(lambda *a: compiled_lm_head_loss(*a, chunk_size=32), h[:70], w, t[:70], m[:70])
        _run(lambda *a: compiled_lm_head_loss(*a, chunk_size=64), h[:20], w, t[:20], m[:20])  # 20 rows -> 32
    assert abs(got[0].item() - ref[0].item()) <= 1e-6 * abs(ref[0].item()) and _close(got[2], ref[2], 1e-6)


@pytest.mark.parametrize("compile", [True, False], ids=["compiled", "eager"])
def test_no_grad_computes_only_the_loss(compile, monkeypatch):
    h, w, t, m = _data((100,), seed=6)
    ref = _plain(h, w, t, m)
    hg, wg = h.clone().requires_grad_(), w.clone().requires_grad_()
    steps = []
    real_step = fused_ce._step
    monkeypatch.setattr(fused_ce, "_step", lambda name, c: steps.append(name) or real_step(name, c))
    with torch.no_grad():
        got = compiled_lm_head_loss(hg, wg, t, m, chunk_size=32, compile=compile)
    assert got.grad_fn is None and not got.requires_grad and got.dtype == torch.float32
    assert abs(got.item() - ref.item()) <= 1e-6 * abs(ref.item())
    plain_inputs = compiled_lm_head_loss(h, w, t, m, chunk_size=32, compile=compile)  # grad on, nothing needs it
    assert plain_inputs.grad_fn is None and abs(plain_inputs.item() - got.item()) <= 1e-6 * abs(ref.item())
    assert steps == ["loss", "loss"]  # no logit gradient, no gradient buffers
    with_grad = compiled_lm_head_loss(hg, wg, t, m, chunk_size=32, compile=compile)
    assert with_grad.grad_fn is not None and abs(with_grad.item() - got.item()) <= 1e-6 * abs(ref.item())
    assert steps == ["loss", "loss", "grad"]


def test_unavailable_compile_warns_and_runs_eagerly(monkeypatch):
    h, w, t, m = _data((40,), seed=7)
    monkeypatch.setattr("shutil.which", lambda name: None)
    why = compiled_ce_unavailable("cpu")
    assert why is not None and "compiler" in why
    with pytest.warns(RuntimeWarning, match="running eagerly"):
        got = compiled_lm_head_loss(h, w, t, m, chunk_size=32)
    assert abs(got.item() - _plain(h, w, t, m).item()) <= 1e-6 * abs(got.item())
    with pytest.raises(ValueError):
        compiled_lm_head_loss(h, w, t, m, chunk_size=0)


def _model_loss_and_grads(model, ids, valid, **kw):
    model.zero_grad(set_to_none=True)
    loss = lm_loss(model, ids, valid, {}, **kw)
    (loss * 0.01).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def test_lm_loss_compiled_matches_plain_model_path(monkeypatch):
    from trainer.model import build_model

    steps = []
    real_step = fused_ce._step
    monkeypatch.setattr(fused_ce, "_step", lambda name, c: steps.append((name, c)) or real_step(name, c))

    model = build_model(DEMO["toy-xs"], seed=0, attn="sdpa")
    assert model.config.hidden_size == D and model.config.vocab_size == V
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied: the head's grad adds to the embedding's
    g = torch.Generator().manual_seed(8)
    ids = torch.randint(0, V, (2, 16), generator=g)  # 2 x 16 tokens: one 32-row chunk
    valid = torch.rand(2, 15, generator=g) < 0.8
    plain, g_plain = _model_loss_and_grads(model, ids, valid, chunked=False)
    comp, g_comp = _model_loss_and_grads(model, ids, valid, chunked=True, compiled=True)
    assert steps == [("grad", True)]  # the compiled gradient-in-forward path ran
    assert comp.dtype == torch.float32
    assert abs(comp.item() - plain.item()) <= 1e-6 * plain.item()
    assert g_plain.keys() == g_comp.keys()
    for n in g_plain:
        assert _close(g_comp[n], g_plain[n], 1e-6), n
    # the embedding gets both the head's and the input side's gradient: a wrong head grad shows here
    assert g_comp["model.embed_tokens.weight"].abs().max() > 0
    # the mask matters
    other = valid.clone()
    other[0, :8] = False
    assert abs(lm_loss(model, ids, other, {}, chunked=True, compiled=True).item() - comp.item()) > 1e-3
