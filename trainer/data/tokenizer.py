"""Text tokenizer + the SIMS speech vocabulary.

The text tokenizer is a byte-level BPE (like Qwen2.5's) trained on the corpus text. The speech
LM's tokenizer is that tokenizer with 502 tokens appended: ``<Un0>``..``<Un499>``, ``<speech>``,
``<text>``. Both are saved as ordinary Hugging Face tokenizer folders (AutoTokenizer loads them).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from scaling.datadir import N_UNITS, SPEECH_MARK, TEXT_MARK, UNIT_TOKENS
from scaling.errors import ConfigError

EOS, PAD = "<|endoftext|>", "<|pad|>"


def train_text_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """Byte-level BPE on the given texts; returns a transformers PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS, PAD], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, bos_token=None, unk_token=None)


def add_speech_tokens(tokenizer) -> None:
    """Append the 502 speech-text tokens (once; idempotent)."""
    vocab = tokenizer.get_vocab()  # once: building it costs milliseconds on a large vocabulary
    missing = [t for t in (*UNIT_TOKENS, SPEECH_MARK, TEXT_MARK) if t not in vocab]
    if missing:
        tokenizer.add_tokens(missing)


@dataclass(frozen=True)
class SpeechVocab:
    """Token ids of the speech vocabulary inside a tokenizer."""

    unit_offset: int
    speech: int
    text: int
    eos: int
    size: int  # len(tokenizer)

    @classmethod
    def of(cls, tokenizer, *, source: str = "tokenizer") -> "SpeechVocab":
        vocab = tokenizer.get_vocab()
        missing = [t for t in (UNIT_TOKENS[0], UNIT_TOKENS[-1], SPEECH_MARK, TEXT_MARK) if t not in vocab]
        if missing:
            raise ConfigError(
                f"tokenizer lacks the speech tokens {missing}; prepare it with add_speech_tokens "
                "(scaling data prepare does this)", source=source, field="added_tokens",
            )
        off = vocab[UNIT_TOKENS[0]]
        ids = [vocab[t] for t in UNIT_TOKENS]
        if ids != list(range(off, off + N_UNITS)):
            raise ConfigError("unit tokens <Un0>..<Un499> must have consecutive ids", source=source, field="added_tokens")
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ConfigError("tokenizer has no eos token", source=source, field="eos_token")
        return cls(unit_offset=off, speech=vocab[SPEECH_MARK], text=vocab[TEXT_MARK], eos=eos, size=len(tokenizer))

    def units_to_ids(self, units) -> list[int]:
        import numpy as np

        arr = np.asarray(units, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= N_UNITS):
            bad = int(arr[(arr < 0) | (arr >= N_UNITS)][0])
            raise ConfigError(f"unit {bad} is outside 0..{N_UNITS - 1}", field="units", value=bad)
        return (arr + self.unit_offset).tolist()


def load_tokenizer(path: str | Path):
    """A tokenizer folder (any HF tokenizer); a clear error when it is missing or unreadable."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise ConfigError("tokenizer folder not found", source=str(path))
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # transformers raises many types for a folder that is not a tokenizer
        raise ConfigError(f"cannot load a tokenizer ({type(e).__name__}: {str(e)[:200]})", source=str(path)) from None


def save_tokenizer(tok, out: Path) -> None:
    """save_pretrained into a temporary folder, renamed into place."""
    import shutil

    from scaling import atomic

    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tok.save_pretrained(str(tmp))
    atomic.replace_dir(tmp, out)
