"""Scoring throughput per benchmark, plain (one padded row per sequence) vs packed (a pair's members
share their prefix, short pairs share a row: ``trainer.eval.packing``), on a toy model; with --loads,
4 metrics in one `scaling eval` call (model loaded once) vs 4 separate calls (4 loads).

Usage: OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_eval.py [--data PREPARED] [--model toy-m]
       [--max-items 200] [--repeats 2] [--loads]
Without --data it generates and prepares a small synthetic corpus in a temporary folder first
(not timed). Prints items/s and tokens/s (tokens of the plain sequences, both members) per benchmark
and way, the max |NLL difference| between the ways, and whether the accuracies are equal.
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
    ap.add_argument("--model", default="toy-m")
    ap.add_argument("--max-items", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--loads", action="store_true", help="also time 1 eval call vs 4 (the model loads)")
    args = ap.parse_args()

    from scaling.datadir import DataDir
    from scaling.shapes import DEMO
    from trainer.data.tokenizer import load_tokenizer
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

    throughput(ckpt, data, args)
    if args.loads:
        loads(ckpt, data, args)


def throughput(ckpt, data, args) -> None:
    import numpy as np
    import torch

    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.eval.scoring import pair_scores, sequence_nll
    from trainer.eval.suite import EvalSuite
    from trainer.model import load_model

    model = load_model(ckpt).eval()
    tok = load_tokenizer(ckpt)
    suite = EvalSuite.from_data(data, NAMES, tok, SpeechVocab.of(tok), max_items=args.max_items)
    print(f"model {args.model}, torch threads {torch.get_num_threads()}, best of {args.repeats}")
    print(f"{'benchmark':<10} {'items':>6} {'tok/item':>8} {'plain items/s':>14} {'tok/s':>9} "
          f"{'packed items/s':>15} {'tok/s':>9} {'speed-up':>8} {'max|dNLL|':>10} same-acc")
    total = {False: 0.0, True: 0.0}
    for name, b in suite.benchmarks.items():
        n = len(b.ids)
        seqs = b.pos + b.neg
        groups = [(i, n + i) for i in range(n)]
        tokens = sum(len(s.ids) for s in seqs)
        best, vals = {}, {}
        for packed in (False, True):
            t = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                vals[packed] = sequence_nll(model, seqs, groups=groups, packed=packed).value("mean")
                t = min(t, time.perf_counter() - t0)
            best[packed] = t
            total[packed] += t
        diff = float(np.max(np.abs(vals[True] - vals[False])))
        same = bool(np.array_equal(pair_scores(vals[True][:n], vals[True][n:]), pair_scores(vals[False][:n], vals[False][n:])))
        print(f"{name:<10} {n:>6} {tokens / (2 * n):>8.1f} {n / best[False]:>14.0f} {tokens / best[False]:>9.0f} "
              f"{n / best[True]:>15.0f} {tokens / best[True]:>9.0f} {best[False] / best[True]:>7.2f}x {diff:>10.1e} {same}")
    print(f"all {len(NAMES)} benchmarks: plain {total[False]:.2f} s, packed {total[True]:.2f} s "
          f"({total[False] / total[True]:.2f}x)")
    from record import write_record  # benchmarks/record.py: a dated record under benchmarks/results/
    print("record:", write_record(
        "eval", {"model": args.model, "max_items": args.max_items, "threads": torch.get_num_threads(),
                 "plain_s": round(total[False], 2), "packed_s": round(total[True], 2),
                 "speedup": round(total[False] / total[True], 2)},
        title=f"benchmark scoring, {args.model}, {args.max_items} pairs per benchmark",
        summary=f"all {len(NAMES)} benchmarks: plain {total[False]:.1f} s, packed {total[True]:.1f} s "
                f"({total[False] / total[True]:.2f}x)"))


def loads(ckpt, data, args) -> None:
    import torch

    from trainer.eval.cli import run_eval

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
