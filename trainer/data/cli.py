"""`scaling data ...`: corpus generation and preparation."""
from __future__ import annotations

from pathlib import Path



def _cmd_data_synth(args) -> int:
    import shutil

    from scaling.atomic import check_out_dir
    from scaling.errors import ConfigError
    from trainer.data.prepare_synthetic import check_vocab_size, is_prepared, prepare_corpus
    from trainer.data.speech import check_inventory
    from trainer.data.synthetic import SynthConfig, generate

    out = check_out_dir(args.out, "--out")  # before anything is written, as the two checks below
    check_inventory(args.units, source="scaling data synth", field="--units")
    check_vocab_size(args.vocab_size, args.text_alphabet)  # a corpus alphabet's minimum is known once the text is
    cfg = (SynthConfig.quick(seed=args.seed, n_units=args.units) if args.quick
           else SynthConfig.large(seed=args.seed, n_units=args.units) if args.large
           else SynthConfig(seed=args.seed, n_units=args.units))
    settings = dict(vocab_size=args.vocab_size, seed=args.seed, n_units=args.units, text_alphabet=args.text_alphabet)
    current = None if args.force else is_prepared(out, cfg.to_dict(), **settings)
    if current is not None:
        print(f"reusing the prepared data in {out} (same corpus settings and seed; --force rebuilds it)")
        _print_data_summary(current.manifest)
        return 0
    fresh = not out.exists()
    try:
        generate(cfg, out)
        print(f"corpus written to {out}/corpus and {out}/benchmarks")
        data = prepare_corpus(out, vocab_size=args.vocab_size, seed=args.seed, n_units=args.units,
                              text_alphabet=args.text_alphabet)
    except ConfigError:
        if fresh:  # bad input found late (the corpus alphabet's minimum): leave nothing behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    _print_data_summary(data)
    return 0


def _print_data_summary(data: dict) -> None:
    from scaling.datadir import N_UNITS

    fr = data["speech_fractions"]["train"]
    n_units = data.get("n_units", N_UNITS)
    print(f"tokenizer: {data['text_vocab_size']} text tokens + {n_units + 2} speech tokens ({n_units} units, "
          f"<speech>, <text>) = {data['speech_vocab_size']} (model rows {data['speech_model_vocab']})")
    if "interleaved" in data["streams"]:
        print(f"interleaved: {fr['speech_word_fraction']:.1%} of words and {fr['speech_token_fraction']:.1%} of tokens are speech")
    for k, v in data["tokens"].items():
        print(f"  {k:<18} {v['tokens']:>10,} tokens  {v['documents']:>7,} documents")


def _cmd_data_extract(args) -> int:
    from scaling.atomic import check_out_file
    from scaling.errors import ConfigError
    from trainer.units.extract import dataset_audio, is_dataset, list_audio, merge_shards

    check_out_file(args.out, "--out")  # appended to (or its shard files beside it): a folder cannot be

    if args.merge:
        files = dataset_audio(args.audio)[0] if is_dataset(args.audio) else list_audio(args.audio)
        n = args.merge
        if n < 1:
            raise ConfigError("must be the number of shards (>= 1)", field="merge", value=n)
        print(f"{merge_shards(files, args.out, n)} lines from {n} shards merged into {args.out}")
        return 0
    if not args.kmeans:
        raise ConfigError("no k-means centroids given: pass --kmeans FILE (.npy, .safetensors or a weights-only .pt "
                          "holding an array [K, D])", field="kmeans")
    settings = dict(model=args.model, kmeans=args.kmeans, layer=args.layer, device=args.device,
                    batch_seconds=args.batch_seconds)
    if args.submit:
        from trainer.data.launch import launch_extract

        launch_extract(args.audio, args.out, settings, shards=args.array, executor=args.submit, wait=not args.no_wait,
                       timeout_min=args.timeout_min)
        return 0
    from trainer.data.launch import run_extract

    res = run_extract(args.audio, args.out, settings, shard=_parse_shard(args.shard))
    print(f"{res['files']} files extracted, {res['skipped']} already done, {res['seconds']} s -> {res['out']}")
    return 0


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    from scaling.errors import ConfigError

    if text is None:
        return None
    i, sep, n = text.partition("/")
    if not (sep and i.isdigit() and n.isdigit() and 0 <= int(i) < int(n)):
        raise ConfigError("must be i/N with 0 <= i < N (e.g. 3/16)", field="shard", value=text)
    return int(i), int(n)


def _parse_weights(items) -> dict[str, float]:
    from scaling.errors import ConfigError

    out = {}
    for item in items or []:
        name, sep, w = item.partition("=")
        try:
            out[name] = float(w)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ConfigError("must be NAME=WEIGHT (a source name and a number)", field="weight", value=item)
    return out


def _prepare_kwargs(args) -> dict:
    return dict(features=args.features, tokenizer=args.tokenizer, text=args.text, alignments=args.alignments,
                seed=args.seed, val_fraction=args.val_fraction, ratio=args.ratio, lam=args.poisson_lambda,
                weights=_parse_weights(args.weight), dedup=args.dedup, max_unaligned=args.max_unaligned,
                chunk=args.chunk, workers=args.workers, n_units=args.units)


def _cmd_data_prepare(args) -> int:
    from scaling.atomic import check_out_dir

    check_out_dir(args.out, "--out", beside=True)  # before any reading: its work folder is built beside it
    from trainer.data.prepare_real import prepare_real

    if args.submit:
        from trainer.data.launch import launch_prepare

        res = launch_prepare(args.out, _prepare_kwargs(args), shards=args.array, executor=args.submit,
                             wait=not args.no_wait, timeout_min=args.timeout_min)
        if "manifest" not in res:
            return 0
        data = res["manifest"]
    else:
        shard = _parse_shard(args.shard)
        data = prepare_real(args.out, shard=shard, merge_only=args.merge, **_prepare_kwargs(args))
        if shard is not None:
            print(f"shard {data['shard']}: {data['items_run']} work item(s) written to {data['work']}; when every "
                  f"shard has finished, run the same command with --merge instead of --shard")
            return 0
    fr = data["speech_fractions"]["train"]
    print(f"speech: {fr['utterances']} utterances, {fr['aligned_utterances']} with word alignments, {fr['words']} words")
    if "interleaved" not in data["streams"]:
        print("interleaved: no stream (no word alignments); speech-only and text streams written")
    if "text" not in data["streams"]:
        print("text: no stream (no --text)")
    _print_data_summary(data)
    for name, src in (data.get("sources") or {}).items():
        shares = ", ".join(f"{k} {v:.1%}" for k, v in src["share"].items() if k.endswith("_train"))
        dropped = f", {src['dropped_duplicates']} duplicates dropped" if src["dropped_duplicates"] else ""
        print(f"source {name} ({src['kind']}, weight {src['weight']:g}): {src['train']:,} train / {src['val']:,} val "
              f"records{dropped}; share of train tokens: {shares}")
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
    s.add_argument("--out", required=True, help="the data folder to write")
    size = s.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a smaller corpus (the quick demo)")
    size.add_argument("--large", action="store_true", help="a ~30M-speech-token corpus (the GPU demo, scaling demo --scale gpu)")
    s.add_argument("--seed", type=int, default=0, help="seed of the corpus, benchmarks and tokenizer (default 0)")
    s.add_argument("--vocab-size", type=int, default=512,
                   help="BPE vocabulary of the text tokenizer: at least 258 with --text-alphabet bytes (256 byte symbols "
                        "+ 2 special tokens), the corpus's distinct bytes + 2 with --text-alphabet corpus")
    s.add_argument("--units", type=int, default=500, metavar="N",
                   help="speech unit inventory (k-means clusters; GSLM uses 50-200, SIMS 500); the speech tokenizer "
                        "adds N + 2 tokens")
    s.add_argument("--text-alphabet", choices=("bytes", "corpus"), default="bytes",
                   help="initial alphabet of the text BPE: all 256 bytes, or only the characters of the corpus "
                        "(a small vocabulary; every validation and benchmark text is checked to round-trip)")
    s.add_argument("--force", action="store_true", help="rebuild even when OUT already holds this corpus")
    s.set_defaults(func=_cmd_data_synth)

    e = dsub.add_parser("extract", help="HuBERT units from audio: features.jsonl (SlamKit schema), resumable")
    e.add_argument("audio", metavar="AUDIO_DIR_OR_LIST", help="a folder of audio files, a text file with one path per line, or a "
                   "datasets folder (save_to_disk) with an 'audio' column")
    e.add_argument("--out", required=True, help="features.jsonl to write (appended; files already in it are skipped)")
    e.add_argument("--model", default="slprl/mhubert-base-25hz", help="HubertModel folder (save_pretrained) or cached hub id")
    e.add_argument("--kmeans", help="centroids [K, D]: .npy, .safetensors or weights-only .pt")
    e.add_argument("--layer", type=int, default=11, help="HuBERT layer whose features are quantised (default 11)")
    e.add_argument("--batch-seconds", type=float, default=120.0, help="padded audio seconds per batch")
    e.add_argument("--device", default="cpu", help="torch device of the HuBERT model (default cpu)")
    e.add_argument("--shard", metavar="i/N", help="extract files i, i+N, ... into OUT's <stem>.<i>-of-<N> file")
    e.add_argument("--merge", type=int, metavar="N", help="interleave the N shard files back into OUT (list order)")
    e.add_argument("--submit", choices=("slurm", "local"), help="run --array shards as a submitit job array, then merge")
    e.add_argument("--array", type=int, default=8, help="array tasks for --submit")
    e.add_argument("--no-wait", action="store_true", help="with --submit: return after submitting (merge later)")
    e.add_argument("--timeout-min", type=int, default=24 * 60, help="with --submit: per-task time limit")
    e.set_defaults(func=_cmd_data_extract)

    p = dsub.add_parser("prepare", help="tokenise and pack a real corpus into shards + data.json (streaming, resumable)")
    p.add_argument("--features", required=True, action="append", metavar="[NAME=]INPUT",
                   help="speech units: SlamKit features.jsonl / tokens.jsonl, our speech JSONL, a folder of JSONL, "
                        "parquet, a datasets save_to_disk folder, or hf:NAME[#SPLIT] (streamed); repeat for several "
                        "sources (a mixture), named NAME=INPUT")
    p.add_argument("--alignments", help="folder of <stem>.json with aligned_text, or a JSONL with file_name + aligned_text")
    p.add_argument("--text", action="append", metavar="[NAME=]INPUT",
                   help="text corpus: .jsonl with 'text', .txt (one document per line), parquet, a datasets folder, "
                        "hf:NAME[#SPLIT], or a folder of .jsonl/.txt; repeatable")
    p.add_argument("--weight", action="append", metavar="NAME=W",
                   help="a source's weight: each training document of it is used W times (2 doubles, 0.5 keeps half)")
    p.add_argument("--dedup", action="store_true", help="drop repeated utterance ids (keeping the first) instead of failing")
    p.add_argument("--max-unaligned", type=float, default=0.5,
                   help="warn when aligned utterances have more than this share of their audio outside aligned words")
    p.add_argument("--workers", type=int, default=1, help="processes on this machine")
    p.add_argument("--chunk", type=int, default=2000, help="records per work item (the unit of resuming and sharding)")
    p.add_argument("--shard", metavar="i/N", help="process work items k %% N == i only (one machine of N); then --merge")
    p.add_argument("--merge", action="store_true", help="index the items every --shard job wrote and write data.json")
    p.add_argument("--submit", choices=("slurm", "local"), help="run --array shards as a submitit job array, then merge")
    p.add_argument("--array", type=int, default=8, help="array tasks for --submit")
    p.add_argument("--no-wait", action="store_true", help="with --submit: return after submitting (merge later)")
    p.add_argument("--timeout-min", type=int, default=24 * 60, help="with --submit: per-task time limit")
    p.add_argument("--tokenizer", required=True, help="the text LM's tokenizer folder; the --units + 2 speech tokens "
                   "(<Un0>.., <speech>, <text>: 502 by default) are added to a copy")
    p.add_argument("--units", type=int, default=500, metavar="N",
                   help="unit inventory of the features (the k-means size they were extracted with)")
    p.add_argument("--out", required=True, help="the data folder to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val split and the interleaving (default 0)")
    p.add_argument("--val-fraction", type=float, default=0.02, help="share of each source's utterances held out for validation (default 0.02)")
    p.add_argument("--ratio", type=float, default=0.3, help="fraction of words spoken in interleaved sequences")
    p.add_argument("--poisson-lambda", type=float, default=10.0, help="mean speech span length in words")
    p.set_defaults(func=_cmd_data_prepare)

