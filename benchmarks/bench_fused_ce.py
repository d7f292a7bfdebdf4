"""Speed and memory of the LM head + cross-entropy, forward + backward: plain full logits, the
Python chunked CE (trainer/kernels/chunked_ce.py), the compiled gradient-in-forward CE
(trainer/kernels/fused_ce.py) and, when installed on CUDA, Liger's fused linear CE.

    python benchmarks/bench_fused_ce.py                          # CPU: 2048 tokens, d 256, vocab 16k
    python benchmarks/bench_fused_ce.py --device cuda --json out.json   # + the Qwen2.5-0.5B head, bf16 autocast

On CUDA the Qwen2.5-0.5B head (8 x 2048 tokens, d 896, vocab 152448: 151936 + speech rows, padded)
runs after the small shape; ``--no-qwen`` skips it. Float32 hidden states and weight, as in
training without FSDP mixed precision; under CUDA the matmuls run in bf16 autocast. The first
(compiling) call is reported apart from the timed iterations."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.kernels.chunked_ce import (  # noqa: E402
    CHUNK,
    COMPILED_CE_CHUNK,
    chunked_lm_head_loss,
    fused_lm_head_loss,
    liger_available,
)
from trainer.kernels.fused_ce import compiled_ce_unavailable, compiled_lm_head_loss  # noqa: E402


def _plain(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    # the reference: full logits, float32 cross-entropy over contiguous rows
    logits = (h @ w.t()).float()
    return F.cross_entropy(logits, torch.where(m, t, -100), ignore_index=-100, reduction="sum")


def _methods(device: torch.device, chunk: int, compiled_chunk: int) -> dict[str, Callable]:
    out: dict[str, Callable] = {
        "plain": _plain,
        "chunked": lambda h, w, t, m: chunked_lm_head_loss(h, w, t, m, chunk_size=chunk),
    }
    if compiled_ce_unavailable(device) is None:
        out["compiled"] = lambda h, w, t, m: compiled_lm_head_loss(h, w, t, m, chunk_size=compiled_chunk)
    out["compiled-eager"] = lambda h, w, t, m: compiled_lm_head_loss(h, w, t, m, chunk_size=compiled_chunk, compile=False)
    if device.type == "cuda" and liger_available():
        out["liger"] = lambda h, w, t, m: fused_lm_head_loss(h, w, t, m, prefer_liger=True)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_shape(name: str, tokens: int, d: int, vocab: int, device: torch.device, *, iters: int, warmup: int,
                autocast: bool, chunk: int, compiled_chunk: int, methods: list[str] | None = None) -> list[dict]:
    g = torch.Generator(device="cpu").manual_seed(0)
    h0 = torch.randn(tokens, d, generator=g).to(device)
    w0 = (torch.randn(vocab, d, generator=g) * 0.02).to(device)
    t = torch.randint(0, vocab, (tokens,), generator=g).to(device)
    m = (torch.rand(tokens, generator=g) < 0.9).to(device)
    rows, ref = [], None
    for meth, fn in _methods(device, chunk, compiled_chunk).items():
        if methods and meth not in methods:
            continue
        h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()

        def step() -> float:
            h.grad = w.grad = None
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = fn(h, w, t, m)
            loss.backward()
            return loss.item()

        row = {"shape": name, "method": meth, "tokens": tokens, "d": d, "vocab": vocab, "autocast_bf16": autocast}
        try:
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            _sync(device)
            t0 = time.perf_counter()
            loss = step()  # the first call compiles
            _sync(device)
            row["first_call_s"] = round(time.perf_counter() - t0, 3)
            for _ in range(warmup):
                step()
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(iters):
                loss = step()
            _sync(device)
            row["ms_per_iter"] = round(1e3 * (time.perf_counter() - t0) / iters, 2)
            if device.type == "cuda":
                row["peak_extra_mib"] = round((torch.cuda.max_memory_allocated(device) - base) / 2**20)
            row["loss"] = loss
            if ref is None:
                ref = loss
            row["rel_diff_vs_first"] = abs(loss - ref) / abs(ref)
        except torch.OutOfMemoryError:
            row["error"] = "OOM"
        except Exception as e:  # noqa: BLE001 - one failing method must not hide the others
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        rows.append(row)
        del h, w
    return rows


def _table(rows: list[dict]) -> str:
    cols = ["shape", "method", "first_call_s", "ms_per_iter", "peak_extra_mib", "loss", "rel_diff_vs_first", "error"]
    cols = [c for c in cols if any(c in r for r in rows)]

    def fmt(v) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1e-2 else f"{v:.6g}"
        return "" if v is None else str(v)

    cells = [cols] + [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    return "\n".join("  ".join(c.ljust(wd) for c, wd in zip(row, widths)) for row in cells)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--vocab", type=int, default=16384)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--chunk", type=int, default=CHUNK, help="rows per chunk of the Python chunked CE")
    p.add_argument("--compiled-chunk", type=int, default=COMPILED_CE_CHUNK, help="rows per chunk of the compiled CE")
    p.add_argument("--methods", nargs="*", help="only these (plain chunked compiled compiled-eager liger)")
    p.add_argument("--no-qwen", action="store_true", help="on CUDA, skip the Qwen2.5-0.5B head shape")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    p.add_argument("--json", type=Path, help="write the rows here")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    kw = dict(iters=a.iters, warmup=a.warmup, autocast=cuda, chunk=a.chunk, compiled_chunk=a.compiled_chunk, methods=a.methods)
    rows = bench_shape("small", a.tokens, a.d, a.vocab, dev, **kw)
    if cuda and not a.no_qwen:
        rows += bench_shape("qwen2.5-0.5b", 8 * 2048, 896, 152448, dev, **kw)
    print(f"device: {torch.cuda.get_device_name(dev) if cuda else 'cpu'} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    print(_table(rows))
    if a.json:
        a.json.write_text(json.dumps({"device": str(dev), "torch": torch.__version__, "rows": rows}, indent=1))
    from record import write_record  # benchmarks/record.py: a dated record under benchmarks/results/
    print("record:", write_record(f"fused_ce_{dev.type}", {"device": str(dev), "torch": torch.__version__, "rows": rows},
                                  title=f"LM head + CE, forward + backward ({dev.type})",
                                  summary=f"{len(rows)} rows; see the record"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
