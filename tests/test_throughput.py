"""Issue 8: chunked LM head + cross-entropy, the model loss through it, regional compile, and the
throughput benchmark (CPU, tiny shapes)."""
from __future__ import annotations

import argparse
import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from scaling.errors import ConfigError
from scaling.shapes import DEMO
from trainer.attention import doc_inputs
from trainer.kernels.chunked_ce import (
    chunked_lm_head_loss,
    fused_lm_head_loss,
    is_compiled,
    liger_available,
    lm_loss,
    regional_compile,
)


def _ref(h, w, t, m):
    nll = F.cross_entropy(h @ w.T, t, reduction="none")
    return (nll * m).sum()


def _data(n, d, v, seed=0, p_valid=0.7):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g)
    w = torch.randn(v, d, generator=g) * 0.5
    t = torch.randint(0, v, (n,), generator=g)
    m = torch.rand(n, generator=g) < p_valid
    return h, w, t, m


def _close(a, b, rel=1e-5):
    return (a - b).abs().max().item() <= rel * max(b.abs().max().item(), 1e-12)


@pytest.mark.parametrize("chunk", [1, 7, 16, 64, 1000])  # 64 divides 64*3; 7 does not; 1000 > tokens
def test_chunked_ce_matches_full_logits_loss_and_grads(chunk):
    h, w, t, m = _data(192, 24, 101, seed=chunk)
    h1, w1 = h.clone().requires_grad_(), w.clone().requires_grad_()
    h2, w2 = h.clone().requires_grad_(), w.clone().requires_grad_()
    got = chunked_lm_head_loss(h1, w1, t, m, chunk_size=chunk)
    ref = _ref(h2, w2, t, m)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert abs(got.item() - ref.item()) <= 1e-5 * abs(ref.item())
    (got * 0.37).backward()
    (ref * 0.37).backward()
    assert _close(h1.grad, h2.grad) and _close(w1.grad, w2.grad)
    # masked positions get no gradient at all
    assert h1.grad[~m].abs().max().item() == 0.0


def test_chunked_ce_without_mask_ignore_index_and_batched_shapes():
    h, w, t, _ = _data(2 * 33, 16, 50, seed=3)
    ref = F.cross_entropy(h @ w.T, t, reduction="sum")
    got = chunked_lm_head_loss(h.view(2, 33, 16), w, t.view(2, 33), chunk_size=10)
    assert abs(got.item() - ref.item()) <= 1e-5 * abs(ref.item())
    t2 = t.clone()
    t2[::3] = -100
    ref2 = F.cross_entropy(h @ w.T, t2, reduction="sum", ignore_index=-100)
    assert abs(chunked_lm_head_loss(h, w, t2, chunk_size=9).item() - ref2.item()) <= 1e-5 * abs(ref2.item())
    with pytest.raises(ValueError):
        chunked_lm_head_loss(h, w, t, chunk_size=0)


def test_chunked_ce_gradcheck_float64():
    h, w, t, m = _data(13, 5, 11, seed=1)
    h, w = h.double().requires_grad_(), w.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: chunked_lm_head_loss(a, b, t, m, chunk_size=4), (h, w))


class _LargestTensor(TorchDispatchMode):
    """Largest tensor (in elements) any op produces: a robust stand-in for peak logits memory."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(o, torch.Tensor):
                self.largest = max(self.largest, o.numel())
        return out


def test_chunked_ce_never_materialises_full_logits():
    n, d, v, chunk = 2048, 16, 4096, 256
    h, w, t, m = _data(n, d, v, seed=5)
    peaks = {}
    for name, fn in {"chunked": lambda a, b: chunked_lm_head_loss(a, b, t, m, chunk_size=chunk),
                     "plain": lambda a, b: _ref(a, b, t, m)}.items():
        a, b = h.clone().requires_grad_(), w.clone().requires_grad_()
        with _LargestTensor() as mode:
            fn(a, b).backward()
        peaks[name] = mode.largest
    assert peaks["plain"] >= n * v
    assert peaks["chunked"] <= chunk * v  # forward and backward: one chunk of logits at a time
    assert peaks["chunked"] * 4 <= peaks["plain"]


def test_fused_wrapper_falls_back_to_chunked_on_cpu():
    assert liger_available() is False  # no CUDA here
    h, w, t, m = _data(40, 8, 30, seed=2)
    assert torch.equal(fused_lm_head_loss(h, w, t, m, chunk_size=8), chunked_lm_head_loss(h, w, t, m, chunk_size=8))


@pytest.fixture(scope="module")
def tiny():
    from trainer.model import build_model

    shape = DEMO["toy-xs"].with_vocab(1024)
    model = build_model(shape, seed=0)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 1024, (3, 40), generator=g)
    eos = 0
    ids[0, 12] = ids[1, 25] = ids[2, 5] = eos
    valid = torch.ones(3, 39, dtype=torch.bool)
    valid[2, 30:] = False  # a shorter row: padding left out of the loss
    return model, ids, valid, doc_inputs(ids, eos)


def _loss_and_grads(model, ids, valid, extra, **kw):
    model.zero_grad(set_to_none=True)
    loss = lm_loss(model, ids, valid, extra, **kw)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def test_lm_loss_chunked_matches_plain_model_path(tiny):
    model, ids, valid, extra = tiny
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied: one parameter gets both paths' grads
    plain, g_plain = _loss_and_grads(model, ids, valid, extra, chunked=False)
    # the plain path is the textbook [B, V, T] cross-entropy (computed over contiguous rows instead) ...
    logits = model(input_ids=ids, **extra).logits
    ref = (F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), ids[:, 1:], reduction="none") * valid).sum()
    assert abs(plain.item() - ref.item()) <= 1e-6 * ref.item()
    # ... and plain transformers' own loss (labels=, a mean over the counted targets) times their number
    labels = torch.where(F.pad(valid, (1, 0), value=False), ids, -100)
    hf = model(input_ids=ids, labels=labels, **extra).loss * valid.sum()
    assert abs(plain.item() - hf.item()) <= 1e-5 * hf.item()
    chunked, g_chunk = _loss_and_grads(model, ids, valid, extra, chunked=True, chunk_size=17)
    assert abs(chunked.item() - plain.item()) <= 1e-5 * plain.item()
    assert g_plain.keys() == g_chunk.keys()
    for n in g_plain:
        assert torch.allclose(g_chunk[n], g_plain[n], rtol=1e-4, atol=1e-6), n
    # the mask matters: a different valid mask gives a different loss
    other = valid.clone()
    other[0, :10] = False
    assert abs(lm_loss(model, ids, other, extra, chunked=True).item() - chunked.item()) > 1e-3


def test_regional_compile_applies_and_matches_eager():
    from trainer.model import build_model

    shape = DEMO["toy-xs"].with_vocab(1024)
    eager, compiled = build_model(shape, seed=0), build_model(shape, seed=0)
    ids = torch.randint(1, 1024, (2, 24), generator=torch.Generator().manual_seed(1))
    valid = torch.ones(2, 23, dtype=torch.bool)
    n = regional_compile(compiled, backend="aot_eager")  # dynamo + AOT autograd, no C compiler needed
    assert n == len(compiled.model.layers) == 2
    assert all(is_compiled(layer) for layer in compiled.model.layers)
    assert not any(is_compiled(layer) for layer in eager.model.layers)
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints keep their names
    le, ge = _loss_and_grads(eager, ids, valid, {}, chunked=True)
    lc, gc = _loss_and_grads(compiled, ids, valid, {}, chunked=True)
    assert abs(lc.item() - le.item()) <= 1e-5 * le.item()
    for k in ge:
        assert torch.allclose(gc[k], ge[k], rtol=1e-4, atol=1e-6), k


def test_regional_compile_falls_back_with_a_warning(monkeypatch):
    from trainer.model import build_model

    model = build_model(DEMO["toy-xs"].with_vocab(1024), seed=0)
    with pytest.warns(RuntimeWarning, match="unknown torch.compile backend"):
        assert regional_compile(model, backend="no-such-backend") == 0
    assert not any(is_compiled(layer) for layer in model.model.layers)
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    with pytest.warns(RuntimeWarning, match="not supported"):
        assert regional_compile(model) == 0
    monkeypatch.undo()
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.warns(RuntimeWarning, match="C/C\\+\\+ compiler"):
        assert regional_compile(model, backend="inductor") == 0
    assert not any(is_compiled(layer) for layer in model.model.layers)
    ids = torch.randint(1, 1024, (1, 16))
    assert torch.isfinite(lm_loss(model, ids, torch.ones(1, 15, dtype=torch.bool), {}, chunked=True))


def _parser():
    from trainer import bench_cli as bench

    p = argparse.ArgumentParser(prog="scaling")
    bench.register(p.add_subparsers(dest="command", required=True))
    return p


def test_bench_throughput_cli_writes_both_variants(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = _parser().parse_args(["bench", "throughput", "--model", "toy-xs", "--seq", "64", "--steps", "2", "--warmup", "0",
                                 "--micro-batch", "2", "--variants", "baseline,chunked", "--json", str(out)])
    assert args.func(args) == 0
    assert "tokens/s" in capsys.readouterr().out
    rec = json.loads(out.read_text())
    rows = {r["variant"]: r for r in rec["results"]}
    assert set(rows) == {"baseline", "chunked"}
    for r in rows.values():
        assert r["device"] == "cpu" and r["mfu"] is None and r["seq"] == 64 and r["steps"] == 2
        assert r["tokens_per_step"] == 2 * 64 and len(r["losses"]) == 2
        for k in ("tokens_per_s", "peak_memory_gib", "first_loss", "final_loss", "speedup_vs_baseline", "flops_per_token"):
            assert isinstance(r[k], float) and math.isfinite(r[k]) and r[k] > 0, k
    assert rows["baseline"]["chunked_ce"] is False and rows["chunked"]["chunked_ce"] is True
    assert rows["baseline"]["speedup_vs_baseline"] == 1.0
    # same seed, same batch: the same first-step loss (and, with the same update, the same second)
    assert abs(rows["chunked"]["first_loss"] - rows["baseline"]["first_loss"]) <= 1e-4
    assert abs(rows["chunked"]["final_loss"] - rows["baseline"]["final_loss"]) <= 1e-4
    assert rows["baseline"]["first_loss"] == pytest.approx(math.log(1024 + 512), rel=0.05)  # near-uniform at init


def test_bench_throughput_variants_compile_ckpt_and_no_doc_mask():
    from trainer.bench import bench_throughput

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = bench_throughput(DEMO["toy-xs"], seq=32, micro_batch=1, steps=1, warmup=0, device="cpu",
                                variants=["baseline", "chunked+compile+ckpt"], compile_backend="aot_eager")
        nodoc = bench_throughput(DEMO["toy-xs"], seq=32, micro_batch=1, steps=1, warmup=0, device="cpu",
                                 variants=["baseline"], doc_mask=False)
    assert rows[1]["compiled_layers"] == 2 and rows[1]["activation_checkpointing"] is True
    assert abs(rows[1]["first_loss"] - rows[0]["first_loss"]) <= 1e-4
    # document masking changes the objective: without it the loss differs (the masks are really used)
    assert abs(nodoc[0]["first_loss"] - rows[0]["first_loss"]) > 1e-5


def test_bench_cli_rejects_published_shape_on_cpu_and_bad_variants():
    p = _parser()
    args = p.parse_args(["bench", "throughput", "--model", "qwen2.5-0.5b", "--seq", "64"])
    with pytest.raises(ConfigError, match="--force"):
        args.func(args)
    args = p.parse_args(["bench", "throughput", "--model", "toy-xs", "--seq", "64", "--variants", "baseline,turbo"])
    with pytest.raises(ConfigError, match="unknown variant"):
        args.func(args)
    args = p.parse_args(["bench", "throughput", "--model", "nope", "--seq", "64"])
    with pytest.raises(ConfigError, match="unknown model"):
        args.func(args)


def test_bench_gpu_runs_on_cpu_tiny(tmp_path, capsys):
    """`scaling bench gpu --device cpu --tiny`: the GPU check's own code, on toy shapes."""
    out = tmp_path / "gpu.json"
    args = _parser().parse_args(["bench", "gpu", "--device", "cpu", "--tiny", "--steps", "1", "--warmup", "0", "--json", str(out)])
    assert args.func(args) == 0
    assert "FSDP" in capsys.readouterr().out
    rec = json.loads(out.read_text())
    rows = {r["variant"]: r for r in rec["single"]}
    assert set(rows) == {"baseline", "ckpt", "chunked", "chunked+ckpt"}  # no FlashAttention on CPU
    assert rows["chunked+ckpt"]["activation_checkpointing"] and rows["chunked+ckpt"]["chunked_ce"]
    assert not rows["baseline"]["activation_checkpointing"] and not rows["baseline"]["chunked_ce"]
    # fp32 on CPU: every variant is the same objective on the same batch
    assert max(rec["loss_agreement"].values()) <= 1e-4
    fs = rec["fsdp"]
    assert fs["fsdp"] and fs["activation_checkpointing"] and fs["chunked_ce"] and math.isfinite(fs["first_loss"])
    assert math.isfinite(rec["validation"]["val_loss"]) and rec["evaluation"]["sequences"] == 16
    assert all(r["memory_estimate_gib"] > 0 for r in rec["single"] + [fs]) and rec["finite"]


def test_bench_gpu_refuses_published_shapes_on_cpu():
    args = _parser().parse_args(["bench", "gpu", "--device", "cpu"])
    with pytest.raises(ConfigError, match="--tiny"):
        args.func(args)


def test_bench_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, trainer.bench; assert 'torch' not in sys.modules, 'torch imported'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_bench_throughput_layers_precision_and_partial_records(tmp_path, monkeypatch):
    """--layers keeps the width at a lower depth, --precision bf16 trains bf16 weights, and the JSON is
    rewritten after every variant (a run killed half-way keeps what it measured)."""
    from dataclasses import replace

    import scaling.atomic as atomic
    from scaling.flops import count_params
    from trainer.bench import bench_vocab

    out = tmp_path / "bench.json"
    writes = []
    real = atomic.write_json
    monkeypatch.setattr(atomic, "write_json", lambda path, obj: (writes.append((obj["complete"], [r["variant"] for r in obj["results"]])),
                                                               real(path, obj))[1])
    args = _parser().parse_args(["bench", "throughput", "--model", "toy-s", "--layers", "1", "--precision", "bf16",
                                 "--seq", "32", "--steps", "1", "--warmup", "0", "--variants", "baseline,chunked",
                                 "--profile", "--json", str(out)])
    assert args.func(args) == 0
    assert writes == [(False, ["baseline"]), (False, ["baseline", "chunked"]), (True, ["baseline", "chunked"])]
    rec = json.loads(out.read_text())
    assert rec["complete"] is True and rec["model"] == "toy-s (1 layers)" and rec["precision"] == "bf16"
    one = replace(DEMO["toy-s"], num_layers=1)
    for r in rec["results"]:
        assert r["num_layers"] == 1 and r["precision"] == "bf16"
        assert r["params"] == count_params(one.with_vocab(bench_vocab(one))).total
        assert all(math.isfinite(x) for x in r["losses"])
        top = r["profile"]["top"]
        assert top and all(t["time"] >= 0 for t in top) and sum(t["share"] for t in top) <= 1 + 1e-9
    a = _parser().parse_args(["bench", "throughput", "--model", "toy-s", "--layers", "0", "--seq", "32"])
    with pytest.raises(ConfigError, match="--layers"):
        a.func(a)


def test_bench_flex_variant_is_gpu_only_and_exclusive_with_sdpa():
    from trainer.bench import bench_throughput, parse_variant

    assert parse_variant("flex+liger+compile").flex
    with pytest.raises(ConfigError, match="pick one"):
        parse_variant("flex+sdpa")
    with pytest.raises(ConfigError, match="GPU only"):
        bench_throughput(DEMO["toy-xs"], seq=32, micro_batch=1, steps=1, warmup=0, device="cpu", variants=["flex+chunked"])


def test_flex_attention_packed_rows_give_the_sdpa_loss():
    """flex_attention takes the packed micro-batch as one row with restarting position ids
    (trainer.attention.FLATTENED): transformers' BlockMask must isolate the documents exactly as the
    SDPA block-diagonal mask does (forward only: flex has no CPU backward)."""
    from trainer.attention import packed_inputs
    from trainer.bench import make_batches
    from trainer.model import build_model

    eos = 5
    ids = make_batches(1, 2, 64, DEMO["toy-xs"].vocab_size, eos)[0]
    valid = torch.ones(2, 63, dtype=torch.bool)
    losses = {}
    for attn in ("sdpa", "flex_attention"):
        model = build_model(DEMO["toy-xs"], 0, attn=attn).eval()
        i2, v2, extra = packed_inputs(ids, valid, eos, attn=attn)
        with torch.no_grad():
            losses[attn] = lm_loss(model, i2, v2, extra, chunked=True).item() / int(v2.sum())
    assert int(v2.sum()) == 2 * 63 and i2.shape == (1, 128)  # one row; the seam target masked out
    assert losses["flex_attention"] == pytest.approx(losses["sdpa"], rel=1e-5)
    # and the documents are really isolated: without the restarting positions the loss differs
    model = build_model(DEMO["toy-xs"], 0, attn="flex_attention").eval()
    with torch.no_grad():
        crossed = lm_loss(model, ids.reshape(1, -1), torch.ones(1, 127, dtype=torch.bool), {}, chunked=True).item() / 127
    assert abs(crossed - losses["sdpa"]) > 1e-4
