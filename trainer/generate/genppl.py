"""GenPPL: continue speech prompts, resynthesise, transcribe, score the transcripts with a text LM.

GenPPL = exp(mean over generations of each transcript's mean NLL), SlamKit's ``asr_perplexity``;
the whole generated audio (prompt + continuation, as SlamKit transcribes it) is vocoded.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scaling.errors import ConfigError


@dataclass
class Generation:
    id: str
    output: str
    tokens: list[int]
    units: list[int] | None = None
    text: str | None = None
    transcript: str | None = None
    nll: float | None = None


@dataclass
class GenPPLResult:
    genppl: float
    n: int  # generations scored
    n_empty: int  # transcripts with nothing to score (left out)
    settings: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"genppl": self.genppl, "items": self.n, "empty": self.n_empty, **self.settings}

    def format(self) -> str:
        s = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return f"genppl {self.genppl:.3f} over {self.n} generations ({self.n_empty} empty transcripts left out; {s})"


def generate_all(model, tokenizer, vocab, prompts, *, temperature: float, top_k: int, max_new_tokens: int,
                 seed: int = 0) -> list[Generation]:
    """One continuation per prompt (seed + prompt index: the same prompt gets the same sample in any batch)."""
    from trainer.generate.sampling import allowed_ids, prompt_ids, sample

    out = []
    was = model.training
    model.eval()
    try:
        for i, p in enumerate(prompts):
            ids = prompt_ids(p, tokenizer, vocab)
            new = sample(model, ids, allowed_ids(vocab, p.output), temperature=temperature, top_k=top_k,
                         max_new_tokens=max_new_tokens, seed=seed + i, eos=vocab.eos)
            g = Generation(p.id, p.output, new)
            if p.output == "speech":
                prompt_units = [u for s in p.segments if s["modality"] == "speech" for u in s["units"]]
                g.units = prompt_units + [t - vocab.unit_offset for t in new]
            else:
                g.text = tokenizer.decode(new, skip_special_tokens=True)
            out.append(g)
    finally:
        model.train(was)
    return out


def score(generations: list[Generation], vocoder, asr, text_lm, settings: dict) -> GenPPLResult:
    nlls, empty = [], 0
    for g in generations:
        if g.output != "speech":
            raise ConfigError(f"prompt {g.id}: GenPPL scores speech continuations; output is {g.output}",
                              field="output", value=g.output)
        wav = vocoder(g.units)
        g.transcript = asr.transcribe(wav, vocoder.sample_rate)
        g.nll = text_lm.nll(g.transcript) if g.transcript.strip() else None
        if g.nll is None:
            empty += 1
        else:
            nlls.append(g.nll)
    value = math.exp(sum(nlls) / len(nlls)) if nlls else float("nan")
    return GenPPLResult(value, len(nlls), empty, settings)


def run_genppl(checkpoint, prompts_path, *, vocoder: str, asr: str, text_lm: str, temperature: float, top_k: int,
               max_new_tokens: int, prompt_seconds: float, max_prompts: int | None = None, seed: int = 0,
               out: str | Path | None = None) -> GenPPLResult:
    import torch

    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.generate.asr import WhisperASR
    from trainer.generate.sampling import check_settings, load_prompts
    from trainer.generate.textlm import TextLM
    from trainer.generate.vocoder import UnitHifiGan
    from trainer.model import load_model

    check_settings(temperature=temperature, top_k=top_k, max_new_tokens=max_new_tokens, prompt_seconds=prompt_seconds,
                   max_prompts=max_prompts)
    prompts = load_prompts(prompts_path, prompt_seconds=prompt_seconds, max_prompts=max_prompts)
    ckpt = Path(checkpoint)
    tok = load_tokenizer(ckpt)
    vocab = SpeechVocab.of(tok, source=str(ckpt))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    voc, rec, lm = UnitHifiGan(vocoder, device), WhisperASR(asr, device), TextLM(text_lm, device)
    model = load_model(ckpt).to(device)
    settings = {"temperature": temperature, "top_k": top_k, "max_new_tokens": max_new_tokens,
                "prompt_seconds": prompt_seconds, "seed": seed, "prompts": len(prompts),
                "vocoder": str(vocoder), "asr": str(asr), "text_lm": str(text_lm)}
    gens = generate_all(model, tok, vocab, prompts, temperature=temperature, top_k=top_k,
                        max_new_tokens=max_new_tokens, seed=seed)
    res = score(gens, voc, rec, lm, settings)
    if out:
        from scaling import atomic

        atomic.write_jsonl(Path(out) / "genppl.jsonl", [asdict(g) for g in gens])
    return res


def genppl_from_args(args) -> GenPPLResult:
    from trainer.generate.sampling import check_settings

    check_settings(temperature=args.temperature, top_k=args.top_k, max_new_tokens=args.max_new_tokens,
                   prompt_seconds=args.prompt_seconds, max_prompts=args.max_prompts)
    missing = [f"--{k.replace('_', '-')}" for k in ("prompts", "vocoder", "asr", "text_lm") if not getattr(args, k, None)]
    if missing:
        raise ConfigError(f"genppl needs {', '.join(missing)}", field="benchmarks", value="genppl")
    return run_genppl(args.checkpoint, args.prompts, vocoder=args.vocoder, asr=args.asr, text_lm=args.text_lm,
                      temperature=args.temperature, top_k=args.top_k, max_new_tokens=args.max_new_tokens,
                      prompt_seconds=args.prompt_seconds, max_prompts=args.max_prompts, seed=args.seed,
                      out=getattr(args, "genppl_out", None))
