"""`scaling data ...`: corpus generation and preparation."""
from __future__ import annotations

from pathlib import Path



def _cmd_data_synth(args) -> int:
    from dataclasses import asdict

    from scaling.datadir import DataDir
    from trainer.data.prepare_synthetic import is_prepared, prepare_corpus
    from trainer.data.synthetic import SynthConfig, generate

    out = Path(args.out)
    cfg = SynthConfig.quick(seed=args.seed) if args.quick else SynthConfig(seed=args.seed)
    if not args.force and is_prepared(out, asdict(cfg), vocab_size=args.vocab_size, seed=args.seed):
        print(f"reusing the prepared data in {out} (same corpus settings and seed; --force rebuilds it)")
        _print_data_summary(DataDir.open(out).manifest)
        return 0
    generate(cfg, out)
    print(f"corpus written to {out}/corpus and {out}/benchmarks")
    data = prepare_corpus(out, vocab_size=args.vocab_size, seed=args.seed)
    _print_data_summary(data)
    return 0


def _print_data_summary(data: dict) -> None:
    fr = data["speech_fractions"]["train"]
    print(f"tokenizer: {data['text_vocab_size']} text tokens + 502 speech tokens = {data['speech_vocab_size']} "
          f"(model rows {data['speech_model_vocab']})")
    if "interleaved" in data["streams"]:
        print(f"interleaved: {fr['speech_word_fraction']:.1%} of words and {fr['speech_token_fraction']:.1%} of tokens are speech")
    for k, v in data["tokens"].items():
        print(f"  {k:<18} {v['tokens']:>10,} tokens  {v['documents']:>7,} documents")


def _cmd_data_extract(args) -> int:
    from scaling.errors import ConfigError
    from trainer.units.extract import extract_units, list_audio
    from trainer.units.hubert import HubertExtractor
    from trainer.units.kmeans import KMeansQuantizer

    if not args.kmeans:
        raise ConfigError("no k-means centroids given: pass --kmeans FILE (.npy, .safetensors or a weights-only .pt "
                          "holding an array [K, D])", field="kmeans")
    files = list_audio(args.audio)
    quantizer = KMeansQuantizer.load(args.kmeans)
    extractor = HubertExtractor(args.model, layer=args.layer, device=args.device)
    res = extract_units(files, args.out, extractor, quantizer, batch_seconds=args.batch_seconds)
    print(f"{res['files']} files extracted, {res['skipped']} already done, {res['seconds']} s -> {args.out}")
    return 0


def _cmd_data_prepare(args) -> int:
    from trainer.data.prepare_real import prepare_real

    data = prepare_real(args.out, features=args.features, tokenizer=args.tokenizer, text=args.text,
                        alignments=args.alignments, seed=args.seed, val_fraction=args.val_fraction,
                        ratio=args.ratio, lam=args.poisson_lambda)
    fr = data["speech_fractions"]["train"]
    print(f"speech: {fr['utterances']} utterances, {fr['aligned_utterances']} with word alignments, {fr['words']} words")
    if "interleaved" not in data["streams"]:
        print("interleaved: no stream (no word alignments); speech-only and text streams written")
    if "text" not in data["streams"]:
        print("text: no stream (no --text)")
    _print_data_summary(data)
    mix = data.get("mixture") or {}
    if mix:
        print("equal-token mix, document sampling ratios: "
              + ", ".join(f"{k} {v:.3f}" for k, v in mix["document_sampling_ratios"].items())
              + f"; {mix['tokens_before_repeat']:,} training tokens before any stream repeats")
    print(f"written to {args.out} in {data['prepare_seconds']} s")
    return 0


def register(sub) -> None:
    data = sub.add_parser("data", help="data preparation")
    dsub = data.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("synth", help="generate the synthetic speech-text corpus and benchmarks, train the tokenizer, pack shards")
    s.add_argument("--out", required=True)
    s.add_argument("--quick", action="store_true", help="a smaller corpus")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary of the text tokenizer")
    s.add_argument("--force", action="store_true", help="rebuild even when OUT already holds this corpus")
    s.set_defaults(func=_cmd_data_synth)

    e = dsub.add_parser("extract", help="HuBERT units from audio: features.jsonl (SlamKit schema), resumable")
    e.add_argument("audio", metavar="AUDIO_DIR_OR_LIST", help="a folder of audio files or a text file with one path per line")
    e.add_argument("--out", required=True, help="features.jsonl to write (appended; files already in it are skipped)")
    e.add_argument("--model", default="slprl/mhubert-base-25hz", help="HubertModel folder (save_pretrained) or cached hub id")
    e.add_argument("--kmeans", help="centroids [K, D]: .npy, .safetensors or weights-only .pt")
    e.add_argument("--layer", type=int, default=11)
    e.add_argument("--batch-seconds", type=float, default=120.0, help="padded audio seconds per batch")
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=_cmd_data_extract)

    p = dsub.add_parser("prepare", help="tokenise and pack a real corpus into shards + data.json")
    p.add_argument("--features", required=True, help="SlamKit features.jsonl / tokens.jsonl, or our speech JSONL")
    p.add_argument("--alignments", help="folder of <stem>.json with aligned_text, or a JSONL with file_name + aligned_text")
    p.add_argument("--text", help="text corpus: .jsonl with 'text', .txt (one document per line), or a folder")
    p.add_argument("--tokenizer", required=True, help="the text LM's tokenizer folder; the 502 speech tokens are added to a copy")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.02)
    p.add_argument("--ratio", type=float, default=0.3, help="fraction of words spoken in interleaved sequences")
    p.add_argument("--poisson-lambda", type=float, default=10.0, help="mean speech span length in words")
    p.set_defaults(func=_cmd_data_prepare)

