"""`scaling generate`, and the generation options `scaling eval --benchmarks genppl` shares with it.
torch and transformers are imported inside the command only."""
from __future__ import annotations

from pathlib import Path

from trainer.generate.sampling import DEFAULTS


def add_generation_args(p, *, required: bool) -> None:
    p.add_argument("--prompts", required=required,
                   help="prompts JSONL (segments + output) or a units file (speech prompts of --prompt-seconds)")
    p.add_argument("--temperature", type=float, default=DEFAULTS["temperature"], help="sampling temperature (SlamKit: 0.8)")
    p.add_argument("--top-k", type=int, default=DEFAULTS["top_k"], help="top-k sampling (SlamKit: 25)")
    p.add_argument("--max-new-tokens", type=int, default=DEFAULTS["max_new_tokens"],
                   help="new units / tokens per prompt (SlamKit: 150)")
    p.add_argument("--prompt-seconds", type=float, default=DEFAULTS["prompt_seconds"],
                   help="speech prompts from a units file keep their first N seconds (SlamKit: 3)")
    p.add_argument("--max-prompts", type=int, default=None, help="first N prompts only")


def add_genppl_args(p) -> None:
    p.add_argument("--vocoder", help="unit HiFi-GAN folder (speech-resynthesis format: config.json + g_* checkpoint)")
    p.add_argument("--asr", help="Whisper model folder (transformers), e.g. a local copy of openai/whisper-large-v3-turbo")
    p.add_argument("--text-lm", help="causal text LM folder (transformers), e.g. a local copy of meta-llama/Llama-3.2-1B")
    p.add_argument("--genppl-out", help="also write each generation, transcript and NLL here (genppl.jsonl)")


def _cmd_generate(args) -> int:
    from scaling import atomic

    atomic.check_out_dir(args.out, "--out")  # before torch and the checkpoint are loaded
    import torch

    from scaling.errors import ConfigError
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.generate.genppl import generate_all
    from trainer.generate.sampling import check_settings, load_prompts
    from trainer.model import load_model

    check_settings(temperature=args.temperature, top_k=args.top_k, max_new_tokens=args.max_new_tokens,
                   prompt_seconds=args.prompt_seconds, max_prompts=args.max_prompts)
    ckpt = Path(args.checkpoint)
    if not ckpt.is_dir():
        raise ConfigError("checkpoint folder not found", source=str(ckpt))
    prompts = load_prompts(args.prompts, prompt_seconds=args.prompt_seconds, max_prompts=args.max_prompts)
    tok = load_tokenizer(ckpt)
    vocab = SpeechVocab.of(tok, source=str(ckpt))
    voc = None
    if args.vocoder:
        from trainer.generate.vocoder import UnitHifiGan

        voc = UnitHifiGan(args.vocoder)
    model = load_model(ckpt)
    if torch.cuda.is_available():
        model.to("cuda")
    gens = generate_all(model, tok, vocab, prompts, temperature=args.temperature, top_k=args.top_k,
                        max_new_tokens=args.max_new_tokens, seed=args.seed)
    out = Path(args.out)
    settings = {"checkpoint": str(ckpt), "temperature": args.temperature, "top_k": args.top_k,
                "max_new_tokens": args.max_new_tokens, "prompt_seconds": args.prompt_seconds, "seed": args.seed}
    rows = []
    for g in gens:
        row = {"id": g.id, "output": g.output, "tokens": g.tokens, **({"units": g.units} if g.units is not None else {}),
               **({"text": g.text} if g.text is not None else {})}
        if voc is not None and g.units is not None:
            import soundfile as sf

            wav = voc(g.units)
            name = f"{g.id.replace('/', '_')}.wav"
            atomic.write_with(out / name, lambda tmp, w=wav: sf.write(str(tmp), w, voc.sample_rate, format="WAV"))
            row["audio"] = name
        rows.append(row)
    atomic.write_jsonl(out / "generations.jsonl", rows)
    atomic.write_json(out / "settings.json", settings)
    print(f"wrote {len(rows)} generations to {out / 'generations.jsonl'}")
    return 0


def register(sub) -> None:
    g = sub.add_parser("generate", help="continue speech / text / interleaved prompts with a checkpoint")
    g.add_argument("checkpoint", help="a model folder (config.json, safetensors, tokenizer with the speech tokens)")
    add_generation_args(g, required=True)
    g.add_argument("--out", required=True, help="output folder: generations.jsonl, settings.json, <id>.wav")
    g.add_argument("--vocoder", help="unit HiFi-GAN folder: also write the speech continuations as audio")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (prompt i uses seed + i)")
    g.set_defaults(func=_cmd_generate)
