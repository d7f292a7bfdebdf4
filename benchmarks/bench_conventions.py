"""Effect of the scoring convention: how many pair decisions flip between ``ours`` and ``slamkit`` on
one model (a checkpoint folder, or a random toy-xs on a small synthetic data folder when none is given).

    PYTHONPATH=$PWD python benchmarks/bench_conventions.py [--checkpoint CKPT --data DATA] [--items 80]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint")
    ap.add_argument("--data")
    ap.add_argument("--items", type=int, default=80)
    args = ap.parse_args()
    import numpy as np
    import torch

    from scaling.datadir import PAIR_BENCHMARKS, DataDir
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.eval.suite import EvalSuite
    from trainer.model import build_model, load_model

    torch.set_num_threads(1)
    if args.checkpoint:
        ckpt, data = Path(args.checkpoint), Path(args.data)
        tok, model = load_tokenizer(ckpt), load_model(ckpt)
    else:
        from scaling.shapes import DEMO
        from trainer.data.prepare_synthetic import prepare_corpus
        from trainer.data.synthetic import SynthConfig, generate

        data = Path(tempfile.mkdtemp()) / "data"
        generate(SynthConfig(seed=0, n_text_stories=400, n_speech_stories=200, n_val_stories=30, n_speakers=4,
                             n_bench_items=args.items), data)
        prepare_corpus(data, vocab_size=320, seed=0)
        tok = load_tokenizer(data / "tokenizer")
        model = build_model(DEMO["toy-xs"].with_vocab(DataDir.open(data, verify="none").speech_model_vocab), 0)
    vocab = SpeechVocab.of(tok)
    names = [n for n in PAIR_BENCHMARKS if n != "ssc_t2s"]  # as measured for the README
    res = {c: EvalSuite.from_data(data, names, tok, vocab, max_items=args.items, convention=c).run_detailed(model, n_resamples=0)
           for c in ("ours", "slamkit")}
    print(f"{'metric':<10} {'ours':>7} {'slamkit':>8} {'flipped':>8}")
    for n in names:
        a, b = res["ours"][n], res["slamkit"][n]
        print(f"{n:<10} {a.accuracy:>7.4f} {b.accuracy:>8.4f} {int(np.sum(a.scores != b.scores)):>4}/{a.n_items}")


if __name__ == "__main__":
    main()
