"""Prompts and sampling.

Prompts file (JSONL), one prompt per line:
    {"id": str, "segments": [{"modality": "speech", "units": [...]}, {"modality": "text", "text": "..."}],
     "output": "speech" | "text"}           (output defaults to the last segment's modality)
or a units file (``file_name`` + ``units`` [+ ``duration`` in 40 ms frames], what ``scaling data extract``
writes): each file becomes a speech prompt of its first ``prompt_seconds`` (SlamKit: 3 s), continued in
speech. Without durations every unit counts one frame.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path

from scaling.datadir import FRAME_S
from scaling.errors import ConfigError
from scaling.jsonl import iter_jsonl
from trainer.eval.formats import check_segments

#: SlamKit's generate / asr_perplexity settings (config/metric/generate.yaml, asr_perplexity.yaml).
DEFAULTS = {"temperature": 0.8, "top_k": 25, "max_new_tokens": 150, "prompt_seconds": 3.0}
OUTPUTS = ("speech", "text")


def check_settings(*, temperature: float, top_k: int, max_new_tokens: int, prompt_seconds: float,
                   max_prompts: int | None = None) -> None:
    """Sampling settings checked before any model is loaded."""
    if not temperature > 0:
        raise ConfigError("must be > 0", field="temperature", value=temperature)
    for name, v in (("top_k", top_k), ("max_new_tokens", max_new_tokens)):
        if v < 1:
            raise ConfigError("must be >= 1", field=name, value=v)
    if not prompt_seconds > 0:
        raise ConfigError("must be > 0", field="prompt_seconds", value=prompt_seconds)
    if max_prompts is not None and max_prompts < 1:
        raise ConfigError("must be >= 1", field="max_prompts", value=max_prompts)


@dataclass(frozen=True)
class Prompt:
    id: str
    segments: list = field(hash=False)
    output: str = "speech"


def load_prompts(path: str | Path, *, prompt_seconds: float = DEFAULTS["prompt_seconds"],
                 max_prompts: int | None = None) -> list[Prompt]:
    path = Path(path)
    out, seen = [], set()
    for line, row in iter_jsonl(path, what="prompts file"):
        pid = row.get("id", row.get("file_name"))
        if pid is None:
            raise ConfigError(f"line {line} has no 'id' (or 'file_name')", source=str(path), field="id")
        if pid in seen:
            raise ConfigError(f"line {line}: duplicate prompt id", source=str(path), field="id", value=pid)
        seen.add(pid)
        if "segments" in row:
            segs = row["segments"]
        elif "units" in row:
            units, dur = row["units"], row.get("duration") or [1] * len(row["units"])
            keep, frames = [], 0
            for u, d in zip(units, dur):
                if (frames + d) * FRAME_S > prompt_seconds + 1e-9:
                    break
                keep.append(u)
                frames += d
            segs = [{"modality": "speech", "units": keep or units[:1]}]
        else:
            raise ConfigError(f"line {line} ({pid}) has neither 'segments' nor 'units'", source=str(path), field="segments")
        check_segments(segs, source=str(path), where=f"line {line} ({pid})", field="segments", modalities=OUTPUTS)
        output = row.get("output", segs[-1]["modality"])
        if output not in OUTPUTS:
            raise ConfigError(f"line {line} ({pid}): must be 'speech' or 'text'", source=str(path), field="output", value=output)
        out.append(Prompt(str(pid), segs, output))
        if max_prompts and len(out) >= max_prompts:
            break
    if not out:
        raise ConfigError("prompts file is empty", source=str(path))
    return out


def prompt_ids(prompt: Prompt, tokenizer, vocab) -> list[int]:
    """The prompt's tokens (our convention: a marker opens every modality run) followed by the output
    modality's marker when the prompt ends in the other modality."""
    from trainer.eval.scoring import encode_segments

    ids = encode_segments(prompt.segments, tokenizer, vocab, item=prompt.id).ids
    if prompt.segments[-1]["modality"] != prompt.output:
        ids.append(vocab.speech if prompt.output == "speech" else vocab.text)
    return ids


def allowed_ids(vocab, output: str) -> list[int]:
    """Tokens the continuation may hold: the units (speech) or the text tokens (text), and eos."""
    if output == "speech":
        return list(range(vocab.unit_offset, vocab.unit_offset + vocab.n_units)) + [vocab.eos]
    return [i for i in range(vocab.unit_offset) if i not in (vocab.speech, vocab.text)] + [vocab.eos]


def sample(model, ids: list[int], allowed: list[int], *, temperature: float, top_k: int, max_new_tokens: int,
           seed: int, eos: int) -> list[int]:
    """Ancestral sampling (temperature, then top-k) restricted to ``allowed``, with a KV cache; stops at
    eos (not returned) or after ``max_new_tokens``. Deterministic in ``seed``."""
    import torch

    check_settings(temperature=temperature, top_k=top_k, max_new_tokens=max_new_tokens, prompt_seconds=1.0)
    device = next(model.parameters()).device
    g = torch.Generator(device="cpu").manual_seed(seed)
    mask = torch.full((model.get_input_embeddings().weight.shape[0],), float("-inf"))
    mask[torch.tensor(allowed)] = 0.0
    out: list[int] = []
    x = torch.tensor([ids], device=device)
    # the KV cache argument is `cache` in transformers 5, `past_key_values` before
    arg = "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"
    past = None
    with torch.no_grad():
        for _ in range(max_new_tokens):
            res = model(input_ids=x, use_cache=True, **({arg: past} if past is not None else {}))
            past = res.get("cache", res.get("past_key_values"))
            logits = res.logits[0, -1].float().cpu() / temperature + mask
            k = min(top_k, len(allowed))
            top, idx = torch.topk(logits, k)
            nxt = int(idx[torch.multinomial(torch.softmax(top, -1), 1, generator=g)])
            if nxt == eos:
                break
            out.append(nxt)
            x = torch.tensor([[nxt]], device=device)
    return out
