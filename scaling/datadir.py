"""The data folder: the contract between data preparation and everything that trains or evaluates.

    DATA/
      data.json                        the manifest (schema below), written last
      tokenizer_text/                  the text LM's tokenizer (HF folder)
      tokenizer/                       the same + <Un0>..<Un{n_units-1}>, <speech>, <text> (the speech LM's)
      shards/<stream>_<split>/<part>.npy       format 2: numbered parts of one stream and split, int32 tokens,
      shards/<stream>_<split>/<part>.docs.npy  documents closed by eos; int64 document offsets within the part
      shards/<stream>_<split>.npy      format 1: one file per stream and split (the synthetic builder)
      shards/<stream>_<split>.docs.npy int64 start offset of each document
      benchmarks/<name>.jsonl          pair files of the benchmark registry (synthetic data)
      corpus/                          the synthetic corpus the shards came from (synthetic data only)

``trainer.data`` is the only writer; every reader (training loop, sweeps, demo, evaluation) opens
the folder through :meth:`DataDir.open`, which checks the shards against ``data.json`` (file
sizes and token counts always, the full hash on request) and, through :meth:`DataDir.check_tokenizer`,
that a tokenizer is the one the shards were made with. This module is torch-free.

``data.json`` (format 2; format 1 differs only in ``tokens``, whose entries have no ``parts``):
    format, seed, fingerprint (16 hex digits: sha256 over the shards' sha256, in manifest order),
    text_vocab_size, speech_vocab_size, text_model_vocab, speech_model_vocab, unit_offset, n_units
    (the vocabulary block; ``n_units``, the size of the unit inventory, is absent in folders written
    before it existed, which all hold 500 units), tokenizer_sha (per tokenizer folder: sha256 of its token -> id table;
    absent in folders written before it existed), tokens ({"<stream>_<split>": {"tokens",
    "documents", "sha256", "parts" (format 2: [{"name", "tokens", "documents", "sha256"}, ...], the index
    of the stream's numbered files in reading order; the stream's sha256 is then the sha256 over its
    parts' sha256)}}), streams, interleave, speech_fractions, mixture, sources (format 2: per speech or
    text source its weight and counts), checks, source, prepare_seconds.

A stream of a format-2 folder reads as one flat token array (:class:`PartedTokens`, memory-mapped part
by part): windows are cut from the concatenation exactly as from a format-1 file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from scaling.errors import ConfigError
from scaling.textio import parse_json
from scaling.shapes import SPEECH_TOKENS, padded_vocab

FORMAT = 2
FORMATS = (1, 2)  # the formats this version reads
MANIFEST = "data.json"
SPLITS = ("train", "val")
#: Every stream a data folder may hold. ``textlm``: plain text (text-LM pre-training); ``text``:
#: ``<text>`` + text; ``speech``: ``<speech>`` + units; ``interleaved``: word-level spans.
STREAMS = ("textlm", "text", "speech", "interleaved")
#: The streams a speech LM mixes (SIMS: equal token shares).
MIX_STREAMS = ("text", "interleaved", "speech")
TEXT_TOKENIZER, SPEECH_TOKENIZER = "tokenizer_text", "tokenizer"

# -- the vocabulary block ------------------------------------------------------------------------
#: The default unit inventory (mHuBERT-25Hz + k-means 500, as SIMS); a data folder records its own in
#: ``n_units`` (GSLM compares 50, 100 and 200 units; a small synthetic demo uses ~100).
N_UNITS = SPEECH_TOKENS - 2
#: The largest inventory a data folder may declare: far above every published discrete-unit vocabulary
#: (k-means 50-2000, codec codebooks 1024-16384), so a larger value is a typo that would otherwise add
#: millions of embedding rows.
MAX_UNITS = 65536
MIN_UNITS = 2
UNIT_TOKENS = tuple(f"<Un{i}>" for i in range(N_UNITS))
SPEECH_MARK, TEXT_MARK = "<speech>", "<text>"


def unit_tokens(n_units: int = N_UNITS) -> tuple[str, ...]:
    """The token names of an inventory of ``n_units`` units: ``<Un0>``..``<Un{n_units-1}>``."""
    return UNIT_TOKENS if n_units == N_UNITS else tuple(f"<Un{i}>" for i in range(n_units))


def check_n_units(n, *, source: str | None = None, field: str = "n_units") -> int:
    """``n`` as a unit-inventory size (an int in MIN_UNITS..MAX_UNITS), else a ConfigError naming the field."""
    if not isinstance(n, int) or isinstance(n, bool) or not MIN_UNITS <= n <= MAX_UNITS:
        raise ConfigError(f"must be the number of speech units, an integer in {MIN_UNITS}..{MAX_UNITS}", source=source,
                          field=field, value=n)
    return n
FRAME_S = 0.04  # 25 Hz units


# -- the benchmark registry -------------------------------------------------------------------------
#: The JSON files of a Hugging Face tokenizer folder (each read by ``from_pretrained`` when present).
TOKENIZER_JSON = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                  "vocab.json")


def check_tokenizer_files(path: str | Path) -> None:
    """Every JSON file of the tokenizer folder ``path`` is UTF-8 JSON: a damaged one is a ConfigError naming
    the file and the place (``from_pretrained`` would raise a bare JSONDecodeError naming neither)."""
    path = Path(path)
    for name in TOKENIZER_JSON:
        f = path / name
        if not f.is_file():
            continue
        try:
            data = f.read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read the tokenizer file ({e.strerror})", source=str(f)) from None
        _, why = parse_json(data)
        if why is None:
            continue
        raise ConfigError(f"the tokenizer file is damaged: {why}; copy the tokenizer folder again (or prepare the data "
                          "folder again)", source=str(f))



@dataclass(frozen=True)
class Benchmark:
    """A benchmark: its name (also its results column), its family (``lexical``, ``syntactic``,
    ``storycloze``, ``generation``), what it measures, which modalities the context and the ending are in
    (the StoryCloze family; lexical and syntactic items are one spoken segment), its direction, and its
    kind (a pairwise-likelihood accuracy, or a generation metric)."""

    name: str
    family: str
    label: str
    description: str
    modalities: tuple[str, str] = ("speech", "speech")
    higher_is_better: bool = True
    #: "pairs": a pairwise-likelihood benchmark; "generation": prompts continued and scored (GenPPL).
    kind: str = "pairs"

    @property
    def file(self) -> str:
        """Its pair file inside a data folder."""
        return f"benchmarks/{self.name}.jsonl"


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("swuggy", "lexical", "sWUGGY", "spoken word vs non-word"),
    Benchmark("sblimp", "syntactic", "sBLIMP", "grammatical vs ungrammatical spoken sentence"),
    Benchmark("ssc", "storycloze", "sStoryCloze", "spoken story, coherent vs adversarial ending"),
    Benchmark("tsc", "storycloze", "tStoryCloze", "spoken story, its ending vs another story's (topic)"),
    Benchmark("ssc_s2t", "storycloze", "StoryCloze S→T", "spoken context, text endings", ("speech", "text")),
    Benchmark("ssc_t2s", "storycloze", "StoryCloze T→S", "text context, spoken endings", ("text", "speech")),
    Benchmark("ssc_t2t", "storycloze", "StoryCloze T→T", "text context, text endings", ("text", "text")),
    Benchmark("genppl", "generation", "GenPPL", "perplexity of transcribed speech continuations under a text LM",
              higher_is_better=False, kind="generation"),
)}
BENCHMARK_NAMES = tuple(BENCHMARKS)
#: The pairwise-likelihood benchmarks (every one has a synthetic builder in trainer.data.benchmarks).
PAIR_BENCHMARKS = tuple(n for n, b in BENCHMARKS.items() if b.kind == "pairs")
DEFAULT_BENCHMARKS = ("swuggy", "sblimp", "ssc", "tsc")
#: Columns that are losses (lower is better) besides the validation losses.
LOWER_IS_BETTER = ("loss", "ppl", "perplexity", "genppl", "nll")


def count_column(name: str) -> str:
    """The results column holding how many items a benchmark's accuracy ``name`` was computed on
    (``swuggy`` -> ``swuggy_n``), so that figures can draw binomial intervals."""
    return f"{name}_n"


def check_benchmarks(names, *, source: str | None = None, field: str = "benchmarks") -> list[str]:
    """``names`` as a list of registered benchmark names (a clear error for a string or an unknown name)."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ConfigError(f"must be a list of benchmark names from {list(BENCHMARK_NAMES)}", source=source,
                          field=field, value=names)
    for n in names:
        if n not in BENCHMARKS:
            raise ConfigError(f"unknown benchmark; known: {list(BENCHMARK_NAMES)}", source=source, field=field, value=n)
    return list(names)


def higher_is_better(column: str) -> bool | None:
    """Direction of a results column: True for the registry's accuracies, False for losses and
    perplexities (``val_loss_*``, ``*ppl*``, ...), None when unknown."""
    if column in BENCHMARKS:
        return BENCHMARKS[column].higher_is_better
    low = column.lower()
    if low.startswith("val_loss") or any(low == k or low.endswith("_" + k) or low.startswith(k + "_") for k in LOWER_IS_BETTER):
        return False
    return None


# -- shard naming -----------------------------------------------------------------------------------
def shard_name(stream: str, split: str) -> str:
    if stream not in STREAMS:
        raise ConfigError(f"unknown stream; known: {list(STREAMS)}", field="stream", value=stream)
    if split not in SPLITS:
        raise ConfigError(f"unknown split; known: {list(SPLITS)}", field="split", value=split)
    return f"{stream}_{split}"


def parse_shard_name(name: str, source: str | None = None) -> tuple[str, str]:
    stream, _, split = name.rpartition("_")
    if stream not in STREAMS or split not in SPLITS:
        raise ConfigError(f"not a shard name (<stream>_<split> with streams {list(STREAMS)} and splits {list(SPLITS)})",
                          source=source, field="tokens", value=name)
    return stream, split


def vocab_sha(vocab: dict[str, int]) -> str:
    """Identity of a tokenizer: sha256 of its token -> id table (16 hex digits)."""
    items = sorted(vocab.items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(items, ensure_ascii=False).encode()).hexdigest()[:16]


def vocab_block(text_vocab_size: int, speech_vocab_size: int, unit_offset: int, n_units: int = N_UNITS) -> dict:
    """The vocabulary part of data.json: tokenizer sizes, the model rows they need (padded to 64), where the
    units start and how many there are."""
    return {
        "text_vocab_size": int(text_vocab_size),
        "speech_vocab_size": int(speech_vocab_size),
        "text_model_vocab": padded_vocab(int(text_vocab_size)),
        "speech_model_vocab": padded_vocab(int(speech_vocab_size)),
        "unit_offset": int(unit_offset),
        "n_units": check_n_units(int(n_units)),
    }


def count_units(vocab: dict[str, int]) -> int:
    """How many unit tokens ``<Un0>, <Un1>, ...`` a token -> id table holds, counted from ``<Un0>`` on
    consecutive ids (0 when it has no ``<Un0>``)."""
    off = vocab.get(UNIT_TOKENS[0])
    if off is None:
        return 0
    n = 1
    while vocab.get(f"<Un{n}>") == off + n:
        n += 1
    return n


def fingerprint(shard_sha256: list[str]) -> str:
    """The data folder's identity (part of every run id): sha256 over its shards' hashes, in order."""
    digest = hashlib.sha256()
    for s in shard_sha256:
        digest.update(s.encode())
    return digest.hexdigest()[:16]


def make_manifest(*, seed: int, tokens: dict, fingerprint: str, vocab: dict, tokenizer_sha: dict, interleave: dict,
                  speech_fractions: dict, format: int = FORMAT, **extra) -> dict:
    """A data.json in its schema: ``vocab`` from :func:`vocab_block`, ``tokens`` from the shard writer
    (format 1: single-file shards; format 2: parted shards)."""
    have = {parse_shard_name(n, "data.json")[0] for n in tokens}
    return {"format": format, "seed": seed, "fingerprint": fingerprint, **vocab, "tokenizer_sha": tokenizer_sha,
            "streams": [s for s in STREAMS if s in have], "tokens": tokens, "interleave": interleave,
            "speech_fractions": speech_fractions, **extra}


_PART_RE = re.compile(r"[0-9][0-9-]*")
_REQUIRED = {"format": int, "fingerprint": str, "text_vocab_size": int, "speech_vocab_size": int,
             "text_model_vocab": int, "speech_model_vocab": int, "unit_offset": int, "tokens": dict}


def check_manifest(m, source: str) -> dict:
    """A parsed data.json checked field by field (the error names the field and the value)."""
    if not isinstance(m, dict):
        raise ConfigError("data.json must hold a JSON object", source=source, value=type(m).__name__)
    for k, typ in _REQUIRED.items():
        if k not in m:
            raise ConfigError("missing field", source=source, field=k)
        if not isinstance(m[k], typ) or isinstance(m[k], bool):
            raise ConfigError(f"must be of type {typ.__name__}", source=source, field=k, value=m[k])
    if "n_units" in m:
        check_n_units(m["n_units"], source=source)
        if m["unit_offset"] + m["n_units"] > m["speech_vocab_size"]:
            raise ConfigError(f"unit_offset {m['unit_offset']} + n_units {m['n_units']} exceeds speech_vocab_size "
                              f"{m['speech_vocab_size']}", source=source, field="n_units", value=m["n_units"])
    if m["format"] not in FORMATS:
        raise ConfigError(f"unsupported data folder format (this version reads formats {list(FORMATS)})", source=source,
                          field="format", value=m["format"])
    for name, info in m["tokens"].items():
        parse_shard_name(name, source)
        if not isinstance(info, dict) or not all(isinstance(info.get(k), int) and info[k] > 0 for k in ("tokens", "documents")):
            raise ConfigError("needs positive integer 'tokens' and 'documents'", source=source, field=f"tokens.{name}", value=info)
        if m["format"] >= 2:
            parts = info.get("parts")
            if not isinstance(parts, list) or not parts:
                raise ConfigError("a format-2 shard needs a non-empty 'parts' index", source=source,
                                  field=f"tokens.{name}.parts", value=parts)
            for k, p in enumerate(parts):
                if not (isinstance(p, dict) and isinstance(p.get("name"), str) and _PART_RE.fullmatch(p["name"])
                        and all(isinstance(p.get(c), int) and p[c] > 0 for c in ("tokens", "documents"))):
                    raise ConfigError("each part needs a 'name' (digits and dashes) and positive integer 'tokens' and "
                                      "'documents'", source=source, field=f"tokens.{name}.parts[{k}]", value=p)
            for c in ("tokens", "documents"):
                total = sum(p[c] for p in parts)
                if total != info[c]:
                    raise ConfigError(f"the parts hold {total} {c} but the stream says {info[c]}", source=source,
                                      field=f"tokens.{name}.{c}", value=info[c])
    return m


def write_manifest(data_dir: str | Path, manifest: dict) -> Path:
    """Check and write ``data.json`` atomically (written last: its presence marks a complete folder)."""
    from scaling import atomic

    path = Path(data_dir) / MANIFEST
    check_manifest(manifest, str(path))
    return atomic.write_json(path, manifest)


def _npy_layout(path: Path) -> tuple[tuple[int, ...], str, int]:
    """(shape, dtype, header length) of a .npy file, read from its header alone."""
    import numpy as np

    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh)
            return shape, dtype.str, fh.tell()
    except (ValueError, OSError) as e:
        raise ConfigError(f"not a readable .npy file ({e})", source=str(path)) from None


@dataclass
class DataDir:
    """An opened, checked data folder."""

    path: Path
    manifest: dict = field(repr=False)

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, verify: str = "size") -> "DataDir":
        """Read and check ``data.json``; ``verify`` = "size" (every shard's header, token and document
        counts and file size: a truncated or swapped shard is an error), "hash" (also the sha256 of
        every shard and the fingerprint) or "none"."""
        path = Path(path)
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise ConfigError("prepared data not found (no data.json); run `scaling data synth --out DIR` or "
                              "`scaling data prepare` first", source=str(mpath))
        try:
            m = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"not valid JSON ({e})", source=str(mpath)) from None
        if verify not in ("size", "hash", "none"):
            raise ValueError(f"verify must be 'size', 'hash' or 'none', not {verify!r}")
        d = cls(path, check_manifest(m, str(mpath)))
        if verify in ("size", "hash"):
            for name in d.manifest["tokens"]:
                d._check_shard(*parse_shard_name(name))
        if verify == "hash":
            d.verify_hash()
        return d

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def seed(self) -> int | None:
        return self.manifest.get("seed")

    # -- vocabulary -------------------------------------------------------------------------
    @property
    def text_model_vocab(self) -> int:
        return self.manifest["text_model_vocab"]

    @property
    def speech_model_vocab(self) -> int:
        return self.manifest["speech_model_vocab"]

    @property
    def text_vocab_size(self) -> int:
        return self.manifest["text_vocab_size"]

    @property
    def n_units(self) -> int:
        """The size of the unit inventory (500 in folders written before data.json recorded it)."""
        return self.manifest.get("n_units", N_UNITS)

    def tokenizer_dir(self, *, speech: bool = True) -> Path:
        return self.path / (SPEECH_TOKENIZER if speech else TEXT_TOKENIZER)

    def check_tokenizer(self, tokenizer, *, speech: bool = True, source: str | None = None) -> None:
        """Error unless ``tokenizer`` is the one this folder's shards were made with."""
        src = source or str(self.tokenizer_dir(speech=speech))
        what = SPEECH_TOKENIZER if speech else TEXT_TOKENIZER
        want = self.manifest["speech_vocab_size" if speech else "text_vocab_size"]
        if len(tokenizer) != want:
            raise ConfigError(f"the tokenizer has {len(tokenizer)} tokens but the shards of {self.path} were made with "
                              f"{want} ({MANIFEST}: {'speech' if speech else 'text'}_vocab_size); it belongs to "
                              "another data folder", source=src, field="vocab_size", value=len(tokenizer))
        vocab = tokenizer.get_vocab()
        if speech and vocab.get(UNIT_TOKENS[0]) != self.manifest["unit_offset"]:
            raise ConfigError(f"<Un0> has id {vocab.get(UNIT_TOKENS[0])} but the shards use unit_offset "
                              f"{self.manifest['unit_offset']}; the tokenizer belongs to another data folder",
                              source=src, field="unit_offset", value=vocab.get(UNIT_TOKENS[0]))
        if speech:
            have = count_units(vocab)
            if have != self.n_units:
                raise ConfigError(f"the tokenizer has {have} unit tokens (<Un0>..<Un{have - 1}>) but the shards of "
                                  f"{self.path} use {self.n_units} ({MANIFEST}: n_units); it belongs to another data "
                                  "folder", source=src, field="n_units", value=have)
        want_sha = (self.manifest.get("tokenizer_sha") or {}).get(what)
        if want_sha and vocab_sha(vocab) != want_sha:
            raise ConfigError(f"the tokenizer's token table differs from the one the shards of {self.path} were made "
                              f"with ({MANIFEST}: tokenizer_sha.{what} = {want_sha}); it belongs to another data folder",
                              source=src, field="tokenizer_sha", value=vocab_sha(vocab))

    def load_tokenizer(self, *, speech: bool = True):
        """The folder's tokenizer (transformers), checked against the manifest."""
        from transformers import AutoTokenizer

        d = self.tokenizer_dir(speech=speech)
        if not d.is_dir():
            raise ConfigError("tokenizer folder not found", source=str(d))
        check_tokenizer_files(d)  # a damaged file named, not a bare JSONDecodeError
        tok = AutoTokenizer.from_pretrained(str(d))
        self.check_tokenizer(tok, speech=speech, source=str(d))
        return tok

    # -- shards -----------------------------------------------------------------------------
    @property
    def streams(self) -> list[str]:
        """Streams with shards, in STREAMS order."""
        have = {parse_shard_name(n)[0] for n in self.manifest["tokens"]}
        return [s for s in STREAMS if s in have]

    def has(self, stream: str, split: str = "train") -> bool:
        return shard_name(stream, split) in self.manifest["tokens"]

    @property
    def format(self) -> int:
        return self.manifest["format"]

    def parts(self, stream: str, split: str) -> list[dict]:
        """The stream's files in reading order: ``[{"name", "tokens", "documents", "sha256"?}]`` (one entry,
        named "", for a format-1 folder)."""
        info = self.counts(stream, split)
        return info["parts"] if self.format >= 2 else [{"name": "", **{k: v for k, v in info.items() if k != "parts"}}]

    def shard_path(self, stream: str, split: str, *, docs: bool = False, part: str = "") -> Path:
        """A shard file: the format-1 single file, or (``part`` given) one numbered part of a format-2 stream."""
        suffix = f"{'.docs' if docs else ''}.npy"
        if part:
            return self.path / "shards" / shard_name(stream, split) / f"{part}{suffix}"
        return self.path / "shards" / f"{shard_name(stream, split)}{suffix}"

    def counts(self, stream: str, split: str) -> dict:
        name = shard_name(stream, split)
        if name not in self.manifest["tokens"]:
            raise ConfigError(f"the data folder has no {split} shard for stream '{stream}' (it has "
                              f"{sorted(self.manifest['tokens'])})", source=str(self.path / MANIFEST), field="tokens", value=name)
        return self.manifest["tokens"][name]

    def _check_shard(self, stream: str, split: str) -> None:
        for part in self.parts(stream, split):
            for docs, n, itemsize in ((False, part["tokens"], 4), (True, part["documents"], 8)):
                check_npy(self.shard_path(stream, split, docs=docs, part=part["name"]), n, itemsize, docs=docs)

    def tokens(self, stream: str, split: str):
        """The stream's tokens, memory-mapped (checked against data.json first): a numpy memmap for a
        single file, a :class:`PartedTokens` over the numbered parts otherwise (same indexing)."""
        import numpy as np

        self._check_shard(stream, split)
        arrays = [np.load(self.shard_path(stream, split, part=p["name"]), mmap_mode="r") for p in self.parts(stream, split)]
        return arrays[0] if len(arrays) == 1 else PartedTokens(arrays)

    def doc_offsets(self, stream: str, split: str):
        """Start offset of every document in the stream's flat token order (int64)."""
        import numpy as np

        self._check_shard(stream, split)
        out, base = [], 0
        for p in self.parts(stream, split):
            out.append(np.load(self.shard_path(stream, split, docs=True, part=p["name"])) + base)
            base += p["tokens"]
        return np.concatenate(out)

    #: tokens per block of the range check (64 MiB of int32): bounded memory whatever the shard's size
    RANGE_BLOCK = 1 << 24

    def check_token_range(self, stream: str, split: str, limit: int, *, what: str = "the vocabulary") -> None:
        """Every token id of the stream lies in 0..limit-1 (``limit``: the ids the run's tokenizer and model
        know): one vectorised pass over its shard files, memory-mapped and read in blocks (11 GB/s from the page
        cache on this project's 2-core test machine: 100M tokens, 0.4 GB, in 0.04 s; else the disk's read speed), so
        an id beyond the vocabulary is a ConfigError naming the shard file, the token's position and the id
        when a run opens its data, not an IndexError in the middle of a step."""
        import numpy as np

        for part in self.parts(stream, split):
            path = self.shard_path(stream, split, part=part["name"])
            arr = np.load(path, mmap_mode="r")
            for start in range(0, len(arr), self.RANGE_BLOCK):
                block = np.asarray(arr[start:start + self.RANGE_BLOCK])
                if block.size and (block.min() < 0 or block.max() >= limit):
                    k = int(np.flatnonzero((block < 0) | (block >= limit))[0])
                    raise ConfigError(f"token {start + k} has id {int(block[k])}, outside {what} (ids 0..{limit - 1}): "
                                      "the shard was not made with this folder's tokenizer, or it is damaged; prepare "
                                      "the data folder again", source=str(path), field="tokens", value=int(block[k]))

    def verify_hash(self) -> None:
        """Recompute every shard's sha256 (against its recorded hash when present) and the fingerprint."""
        import numpy as np

        shas = []
        for name, info in self.manifest["tokens"].items():
            stream, split = parse_shard_name(name)
            part_shas = []
            for part in self.parts(stream, split):
                p = self.shard_path(stream, split, part=part["name"])
                sha = shard_sha256(np.load(p, mmap_mode="r"))
                if part.get("sha256") and part["sha256"] != sha:
                    raise ConfigError("shard content differs from its sha256 in data.json", source=str(p), field="sha256",
                                      value=sha)
                part_shas.append(sha)
            sha = part_shas[0] if self.format < 2 else stream_sha256(part_shas)
            if info.get("sha256") and info["sha256"] != sha:
                raise ConfigError("stream content differs from its sha256 in data.json", source=str(self.path / MANIFEST),
                                  field=f"tokens.{name}.sha256", value=sha)
            shas.append(sha)
        fp = fingerprint(shas)
        if fp != self.fingerprint:
            raise ConfigError(f"the shards hash to fingerprint {fp}, data.json says {self.fingerprint}",
                              source=str(self.path / MANIFEST), field="fingerprint", value=self.fingerprint)

    # -- benchmarks -------------------------------------------------------------------------
    def benchmark_file(self, name: str) -> Path:
        return self.path / BENCHMARKS[name].file if name in BENCHMARKS else self.path / "benchmarks" / f"{name}.jsonl"


def shard_sha256(tokens) -> str:
    """sha256 of a shard's int32 tokens (the bytes the fingerprint covers)."""
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(tokens, dtype=np.int32).tobytes()).hexdigest()


def stream_sha256(part_sha256: list[str]) -> str:
    """A format-2 stream's sha256: over its parts' sha256, in reading order (no need to reread the tokens)."""
    digest = hashlib.sha256()
    for s in part_sha256:
        digest.update(s.encode())
    return digest.hexdigest()


def check_npy(path: Path, n: int, itemsize: int, *, docs: bool) -> None:
    """A shard file exists, has the shape and dtype data.json says, and is not truncated."""
    if not path.is_file():
        raise ConfigError("token shard listed in data.json is missing", source=str(path))
    shape, dtype, header = _npy_layout(path)
    if shape != (n,) or dtype not in (("<i4", "|i4") if not docs else ("<i8",)):
        raise ConfigError(f"holds {dtype} {shape} but data.json says {n} {'documents' if docs else 'tokens'}; "
                          "the shard does not belong to this data folder", source=str(path), field="shape", value=shape)
    size = os.path.getsize(path)
    if size != header + n * itemsize:
        raise ConfigError(f"the file has {size} bytes but its header and data.json need {header + n * itemsize}: "
                          "it is truncated or corrupt; prepare the data folder again", source=str(path),
                          field="size", value=size)


class PartedTokens:
    """Memory-mapped parts read as one flat int32 array: ``len``, integer and slice indexing (a slice that
    crosses a part boundary is copied out of both), ``np.asarray``. Only the touched pages are read."""

    def __init__(self, arrays):
        import numpy as np

        self.arrays = list(arrays)
        self.starts = np.concatenate([[0], np.cumsum([len(a) for a in self.arrays])]).astype(np.int64)
        self.dtype = np.dtype(np.int32)

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def __array__(self, dtype=None, copy=None):
        import numpy as np

        out = np.concatenate([np.asarray(a) for a in self.arrays])
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key):
        import numpy as np

        n = len(self)
        if isinstance(key, (int, np.integer)):
            k = int(key) + (n if key < 0 else 0)
            if not 0 <= k < n:
                raise IndexError(f"index {key} out of range for {n} tokens")
            p = int(np.searchsorted(self.starts, k, side="right")) - 1
            return self.arrays[p][k - self.starts[p]]
        if not isinstance(key, slice) or key.step not in (None, 1):
            return np.asarray(self)[key]
        a, b, _ = key.indices(n)
        if b <= a:
            return np.empty(0, dtype=self.dtype)
        first = int(np.searchsorted(self.starts, a, side="right")) - 1
        last = int(np.searchsorted(self.starts, b, side="left")) - 1
        pieces = [self.arrays[p][max(a - self.starts[p], 0):min(b, self.starts[p + 1]) - self.starts[p]]
                  for p in range(first, last + 1)]
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
