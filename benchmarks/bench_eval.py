"""Time 4 metrics in one `scaling eval` call (model loaded once) vs 4 separate calls (4 loads).

Usage: OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_eval.py [--data PREPARED] [--model toy-s]
       [--max-items 40] [--repeats 3]
Without --data it generates and prepares a small synthetic corpus in a temporary folder first
(not timed). Prints the best-of-N wall time of each way and checks they give the same accuracies.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from scaling.datadir import DEFAULT_BENCHMARKS

NAMES = list(DEFAULT_BENCHMARKS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="a prepared data folder (default: a fresh small synthetic one)")
    ap.add_argument("--model", default="toy-s")
    ap.add_argument("--max-items", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    from scaling.shapes import DEMO
    from scaling.datadir import DataDir
    from trainer.data.tokenizer import load_tokenizer
    from trainer.eval.cli import run_eval
    from trainer.model import build_model, quiet_transformers

    quiet_transformers()

    tmp = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    data = Path(args.data) if args.data else None
    if data is None:
        from trainer.data.prepare_synthetic import prepare_corpus
        from trainer.data.synthetic import SynthConfig, generate

        data = tmp / "data"
        generate(SynthConfig(seed=0, n_text_stories=400, n_speech_stories=200, n_val_stories=30, n_speakers=4,
                             n_bench_items=args.max_items), data)
        prepare_corpus(data, vocab_size=320, seed=0)
    ckpt = tmp / "model"
    model = build_model(DEMO[args.model].with_vocab(DataDir.open(data).manifest["speech_model_vocab"]), 0)
    model.save_pretrained(str(ckpt))
    load_tokenizer(data / "tokenizer").save_pretrained(str(ckpt))
    del model

    def together():
        return {k: r.accuracy for k, r in run_eval(ckpt, data, NAMES, max_items=args.max_items).items()}

    def separately():
        out = {}
        for n in NAMES:
            out.update({k: r.accuracy for k, r in run_eval(ckpt, data, [n], max_items=args.max_items).items()})
        return out

    times, accs = {}, {}
    for label, fn in (("4 metrics, 1 call (1 load)", together), ("4 calls, 1 metric each (4 loads)", separately)):
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            accs[label] = fn()
            best = min(best, time.perf_counter() - t0)
        times[label] = best
    a, b = times.values()
    print(f"model {args.model}, {args.max_items} pairs per metric, torch threads {torch.get_num_threads()}, "
          f"best of {args.repeats}")
    for label, t in times.items():
        print(f"{label:<34} {t:7.2f} s")
    print(f"speed-up {b / a:.2f}x; same accuracies: {len({tuple(sorted(v.items())) for v in accs.values()}) == 1}")


if __name__ == "__main__":
    main()
