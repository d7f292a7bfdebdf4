"""Effect of the scoring convention: how many pair decisions flip between ``ours`` and ``slamkit`` on
one model (a checkpoint folder, or a random toy-xs on a small synthetic data folder when none is given),
and how many scored-token counts differ (SlamKit's pad-id label drop, the unit tokeniser's BOS/EOS, the
dedup across a speech -> speech join). ``--dtype bf16`` scores both in bfloat16 (SlamKit's precision).

    PYTHONPATH=$PWD python benchmarks/bench_conventions.py [--checkpoint CKPT --data DATA] [--items 80]
        [--dtype fp32|bf16] [--slamkit-tokeniser unit|interleaved]
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
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--slamkit-tokeniser", choices=["unit", "interleaved"], default=None,
                    help="default: the checkpoint's, else interleaved")
    args = ap.parse_args()
    import numpy as np
    import torch

    from scaling.datadir import BENCHMARKS, PAIR_BENCHMARKS, DataDir
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.eval.scoring import slamkit_rules
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
    rules = slamkit_rules(tok, tokeniser=args.slamkit_tokeniser, checkpoint=args.checkpoint)
    names = [n for n in PAIR_BENCHMARKS if n != "ssc_t2s"]  # as measured for the README
    if rules.tokeniser == "unit":  # a pure-speech model scores speech items only
        names = [n for n in names if BENCHMARKS[n].modalities == ("speech", "speech")]
    model = model.to(torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    res = {c: EvalSuite.from_data(data, names, tok, vocab, max_items=args.items, convention=c, dtype=args.dtype,
                                  slamkit=rules if c == "slamkit" else None).run_detailed(model, n_resamples=0)
           for c in ("ours", "slamkit")}
    print(f"dtype {args.dtype}; slamkit: {res['slamkit'][names[0]].settings}")
    print(f"{'metric':<10} {'ours':>7} {'slamkit':>8} {'flipped':>8} {'scored tokens ours/slamkit':>27}")
    for n in names:
        a, b = res["ours"][n], res["slamkit"][n]
        toks = f"{int(a.n_tokens_pos.sum() + a.n_tokens_neg.sum())}/{int(b.n_tokens_pos.sum() + b.n_tokens_neg.sum())}"
        print(f"{n:<10} {a.accuracy:>7.4f} {b.accuracy:>8.4f} {int(np.sum(a.scores != b.scores)):>4}/{a.n_items} {toks:>27}")
    from record import write_record  # benchmarks/record.py: a dated record under benchmarks/results/
    flipped = {n: int(np.sum(res["ours"][n].scores != res["slamkit"][n].scores)) for n in names}
    print("record:", write_record(
        "conventions", {"dtype": args.dtype, "items": args.items, "checkpoint": args.checkpoint is not None,
                        "accuracy": {c: {n: round(float(res[c][n].accuracy), 4) for n in names} for c in res},
                        "flipped": flipped},
        title=f"scoring convention effect, {'a checkpoint' if args.checkpoint else 'random toy-xs'}, {args.items} items per set",
        summary="decisions flipped ours vs slamkit: " + ", ".join(f"{n} {k}" for n, k in flipped.items())))


if __name__ == "__main__":
    main()
