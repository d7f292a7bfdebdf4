"""The trainer's subcommands of `scaling`: data preparation, training one run, evaluation.
Registered by scaling.cli; heavy imports stay inside the command functions."""
from __future__ import annotations

import json
from pathlib import Path

from scaling.errors import ConfigError


def _cmd_data_synth(args) -> int:
    from trainer.data.prepare import prepare_corpus
    from trainer.data.synthetic import SynthConfig, generate

    out = Path(args.out)
    cfg = SynthConfig.quick(seed=args.seed) if args.quick else SynthConfig(seed=args.seed)
    man = generate(cfg, out)
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


def _cmd_train(args) -> int:
    from scaling import atomic
    from scaling.rundir import RunDir
    from scaling.spec import RunSpec
    from trainer.execute import execute

    target = Path(args.spec)
    if target.is_dir():
        run = RunDir(target)
        run.spec()  # validates
    else:
        spec = RunSpec.load(target)
        if not spec.data_dir:
            raise ConfigError("is required to train a run on its own", source=str(target), field="data_dir")
        out = Path(args.run_dir) if args.run_dir else target.parent / "runs" / spec.run_id
        run = RunDir(out).create(spec)
    rec = execute(run)
    print(json.dumps({k: rec[k] for k in ("run_id", "tokens", "flops", "val_loss_speech", "val_loss_text") if k in rec}, indent=2))
    if args.json:
        atomic.write_json(args.json, rec)
    return 0


def _cmd_eval(args) -> int:
    from scaling import atomic
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.eval.benchmarks import evaluate
    from trainer.model import load_model

    ckpt = Path(args.checkpoint)
    model = load_model(ckpt)
    tok = load_tokenizer(ckpt)
    vocab = SpeechVocab.of(tok, source=str(ckpt))
    names = [b for b in args.benchmarks.split(",") if b]
    res = evaluate(model, tok, vocab, Path(args.data) / "benchmarks" if (Path(args.data) / "benchmarks").is_dir() else Path(args.data),
                   names, max_items=args.max_items, norm=args.norm, span=args.span)
    for k, v in res.items():
        print(f"{k:<10} {v:.4f}")
    if args.json:
        atomic.write_json(args.json, res)
    return 0


def register(sub) -> None:
    data = sub.add_parser("data", help="data preparation")
    dsub = data.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("synth", help="generate the synthetic speech-text corpus and benchmarks, train the tokenizer, pack shards")
    s.add_argument("--out", required=True)
    s.add_argument("--quick", action="store_true", help="a smaller corpus")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary of the text tokenizer")
    s.set_defaults(func=_cmd_data_synth)

    t = sub.add_parser("train", help="train one run from a run spec (spec.yaml) or a planned run folder")
    t.add_argument("spec", help="RUN.yaml or runs/<run_id>/")
    t.add_argument("--run-dir", help="where to put the run (default: runs/<run_id> beside the spec)")
    t.add_argument("--json", help="also write the result record here")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("eval", help="evaluate a checkpoint on likelihood benchmarks")
    e.add_argument("checkpoint", help="a model folder (config.json, safetensors, tokenizer with the speech tokens)")
    e.add_argument("--benchmarks", default="swuggy,sblimp,ssc,tsc", help="comma-separated benchmark names")
    e.add_argument("--data", required=True, help="data folder holding benchmarks/<name>.jsonl (or that folder itself)")
    e.add_argument("--max-items", type=int, default=None)
    e.add_argument("--norm", choices=["mean", "sum"], default="mean", help="NLL normalisation (published default: mean)")
    e.add_argument("--span", choices=["whole", "continuation"], default="whole", help="score the whole sequence or the last segment")
    e.add_argument("--json", help="write the accuracies as JSON")
    e.set_defaults(func=_cmd_eval)
