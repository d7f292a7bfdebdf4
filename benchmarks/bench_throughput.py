"""Throughput of the training step: plain transformers vs chunked CE / regional compile / checkpointing.

    python benchmarks/bench_throughput.py                      # toy-s, seq 512, on the CPU
    python benchmarks/bench_throughput.py --model qwen2.5-0.5b --seq 2048 --micro-batch 8 --json out.json   # one H100

Same options as `scaling bench throughput` (see trainer/bench.py)."""
from __future__ import annotations

import sys

from scaling.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--model" not in argv:
        argv += ["--model", "toy-s", "--seq", "512", "--micro-batch", "4", "--steps", "5", "--warmup", "2"]
    raise SystemExit(main(["bench", "throughput", *argv]))
