"""Text tokenizer + the SIMS speech vocabulary.

The text tokenizer is a byte-level BPE (like Qwen2.5's) trained on the corpus text. The speech
LM's tokenizer is that tokenizer with n_units + 2 tokens appended: ``<Un0>``..``<Un{n_units-1}>``,
``<speech>``, ``<text>`` (502 for the default 500 units). Both are saved as ordinary Hugging Face
tokenizer folders (AutoTokenizer loads them).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from scaling.datadir import (N_UNITS, SPEECH_MARK, TEXT_MARK, UNIT_TOKENS, check_n_units, check_tokenizer_files, count_units,
                             unit_tokens)
from scaling.errors import ConfigError

EOS, PAD = "<|endoftext|>", "<|pad|>"
#: Initial alphabets of the text BPE: "bytes", all 256 byte symbols (any text encodes; a small
#: vocabulary spends up to 256 rows on bytes the corpus never holds); "corpus", only the byte symbols
#: of the training text (a small vocabulary over a known character set, checked by
#: :func:`check_round_trip`, since a byte outside it is dropped without a trace).
ALPHABETS = ("bytes", "corpus")


def train_text_tokenizer(texts: Iterable[str], vocab_size: int = 512, alphabet: str = "bytes"):
    """Byte-level BPE on the given texts; returns a transformers PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if alphabet not in ALPHABETS:
        raise ConfigError(f"unknown text alphabet; known: {list(ALPHABETS)}", field="text_alphabet", value=alphabet)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS, PAD], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if alphabet == "bytes" else [],
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, bos_token=None, unk_token=None)


def check_round_trip(tokenizer, texts: Iterable[tuple[str, str]], *, source: str, field: str = "text") -> None:
    """Error unless every text decodes back to itself exactly (a tokenizer trained on a corpus's own
    alphabet drops any other character silently). ``texts``: (where, text) pairs, ``where`` naming the
    text inside ``source`` ("line 3"); the error names the file, the place and the first lost character."""
    texts = list(texts)
    if not texts:
        return
    ids = [e.ids for e in tokenizer.backend_tokenizer.encode_batch([t for _, t in texts], add_special_tokens=False)]
    for (where, text), got in zip(texts, tokenizer.batch_decode(ids, clean_up_tokenization_spaces=False)):
        if got != text:
            bad = next((c for c in text if tokenizer.decode(tokenizer(c, add_special_tokens=False)["input_ids"],
                                                             clean_up_tokenization_spaces=False) != c), text)
            raise ConfigError(f"{where}: the text does not survive the text tokenizer (encode then decode); its first "
                              f"lost character is {bad!r}, which the training text never holds (--text-alphabet "
                              "corpus); use --text-alphabet bytes or keep the text to the corpus's characters",
                              source=source, field=field, value=bad)


def add_speech_tokens(tokenizer, n_units: int = N_UNITS) -> None:
    """Append the n_units + 2 speech-text tokens ``<Un0>``..``<Un{n_units-1}>``, ``<speech>``, ``<text>``
    (once; idempotent)."""
    vocab = tokenizer.get_vocab()  # once: building it costs milliseconds on a large vocabulary
    missing = [t for t in (*unit_tokens(check_n_units(n_units)), SPEECH_MARK, TEXT_MARK) if t not in vocab]
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
    n_units: int = N_UNITS  # the unit inventory: <Un0>..<Un{n_units-1}>

    @classmethod
    def of(cls, tokenizer, *, source: str = "tokenizer") -> "SpeechVocab":
        """The speech ids of ``tokenizer``; the inventory is every ``<UnK>`` on consecutive ids from ``<Un0>``."""
        vocab = tokenizer.get_vocab()
        missing = [t for t in (UNIT_TOKENS[0], SPEECH_MARK, TEXT_MARK) if t not in vocab]
        if missing:
            raise ConfigError(
                f"tokenizer lacks the speech tokens {missing}; prepare it with add_speech_tokens "
                "(scaling data prepare does this)", source=source, field="added_tokens",
            )
        off = vocab[UNIT_TOKENS[0]]
        n = count_units(vocab)
        if f"<Un{n}>" in vocab:  # a later unit exists but not on the next id
            raise ConfigError(f"unit tokens <Un0>..<Un{n}> must have consecutive ids (<Un{n}> has id {vocab[f'<Un{n}>']}, "
                              f"not {off + n})", source=source, field="added_tokens", value=f"<Un{n}>")
        if n < 2:
            raise ConfigError(f"tokenizer has {n} unit token(s); a speech vocabulary needs at least 2",
                              source=source, field="added_tokens", value=n)
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ConfigError("tokenizer has no eos token", source=source, field="eos_token")
        return cls(unit_offset=off, speech=vocab[SPEECH_MARK], text=vocab[TEXT_MARK], eos=eos, size=len(tokenizer),
                   n_units=n)

    def units_to_ids(self, units) -> list[int]:
        import numpy as np

        arr = np.asarray(units, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.n_units):
            bad = int(arr[(arr < 0) | (arr >= self.n_units)][0])
            raise ConfigError(f"unit {bad} is outside 0..{self.n_units - 1}", field="units", value=bad)
        return (arr + self.unit_offset).tolist()


def load_tokenizer(path: str | Path):
    """A tokenizer folder (any HF tokenizer); a clear error when it is missing or unreadable: a damaged JSON
    file of it is named (:func:`check_tokenizer_files`), any other failure names the folder."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise ConfigError("tokenizer folder not found", source=str(path))
    check_tokenizer_files(path)
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
