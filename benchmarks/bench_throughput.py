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
    rc = main(["bench", "throughput", *argv])
    if rc == 0 and "--json" in argv:  # the records of `scaling bench throughput --json`, as a dated record
        import json
        from pathlib import Path

        from record import write_record  # benchmarks/record.py: a dated record under benchmarks/results/
        out = json.loads(Path(argv[argv.index("--json") + 1]).read_text(encoding="utf-8"))
        model = argv[argv.index("--model") + 1]
        print("record:", write_record(f"throughput_{model}", out, title=f"training step throughput, {model}",
                                      summary="see the record's variants"))
    raise SystemExit(rc)
