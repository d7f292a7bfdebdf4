"""`scaling data ...`: corpus generation and preparation."""
from __future__ import annotations

from pathlib import Path



def _cmd_data_synth(args) -> int:
    from trainer.data.prepare import prepare_corpus
    from trainer.data.synthetic import SynthConfig, generate

    out = Path(args.out)
    cfg = SynthConfig.quick(seed=args.seed) if args.quick else SynthConfig(seed=args.seed)
    generate(cfg, out)
    print(f"corpus written to {out}/corpus and {out}/benchmarks")
    data = prepare_corpus(out, vocab_size=args.vocab_size, seed=args.seed)
    _print_data_summary(data)
    return 0


def _print_data_summary(data: dict) -> None:
    fr = data["speech_fractions"]["train"]
    print(f"tokenizer: {data['text_vocab_size']} text tokens + 502 speech tokens = {data['speech_vocab_size']} "
          f"(model rows {data['speech_model_vocab']})")
    print(f"interleaved: {fr['speech_word_fraction']:.1%} of words and {fr['speech_token_fraction']:.1%} of tokens are speech")
    for k, v in data["tokens"].items():
        print(f"  {k:<18} {v['tokens']:>10,} tokens  {v['documents']:>7,} documents")


def register(sub) -> None:
    data = sub.add_parser("data", help="data preparation")
    dsub = data.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("synth", help="generate the synthetic speech-text corpus and benchmarks, train the tokenizer, pack shards")
    s.add_argument("--out", required=True)
    s.add_argument("--quick", action="store_true", help="a smaller corpus")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary of the text tokenizer")
    s.set_defaults(func=_cmd_data_synth)

