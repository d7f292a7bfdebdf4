"""SlamKit checkpoints (slp-rl/slamkit ``UnitLM`` folders, e.g. the released SIMS and Slam models): the one
owner of the format, read and written.

A folder as ``UnitLM.save_pretrained`` writes it (SlamKit runs on transformers 4.48 or later):

- ``config.json``: ``model_type: speech_language_model``, ``architectures: ["UnitLM"]``, ``vocab_size`` (the
  rows of the embeddings, speech tokens included), ``base_model_name``, ``twist_init``, ``use_cache`` and the
  other ``UnitLMConfig`` arguments SlamKit passed (``dropout``, ``attention_dropout``, ``layerdrop``,
  ``trust_remote_code``, ``use_safetensors``, ...), ``torch_dtype`` (of the saved weights), and under
  ``base_config`` the text LM's whole config in the transformers 4.x layout (``rope_theta``/``rope_scaling``,
  ``torch_dtype``, the generation defaults), with SlamKit's pad/bos/eos ids (0/1/1 unless its config says
  otherwise) and the text LM's *own* ``vocab_size``: SlamKit resizes the embeddings after building the LM, so
  the rows of the weights are the top-level ``vocab_size``. ``tie_word_embeddings`` appears at the top level
  only when it is false (the top level copies the base config's, and true is the default).
- ``generation_config.json``: ``{"_from_model_config": true, "transformers_version": ..., "use_cache": false}``.
- ``model.safetensors``, or ``model-0000i-of-0000n.safetensors`` with ``model.safetensors.index.json`` (shards of
  at most 5 GB): the wrapped causal LM's tensors under ``lm.`` (``UnitLM.lm``, ``base_model_prefix = "lm"``);
  with tied embeddings ``lm.lm_head.weight`` is not written.
- no tokenizer: SlamKit builds its tokenisers from its own config.

Read (``load_lm``, ``lm_config``, ``lm_state_dict``): the plain transformers causal LM of ``base_config`` with
the UnitLM's rows and the ``lm.`` prefix stripped, weights read once (file by file, then handed to
``from_pretrained``; fp32 by default). SlamKit's pad/bos/eos ids are tokeniser conventions, not the LM's: they are returned by
:func:`slamkit_conventions` and left out of the LM's config (kept there, the pad id would become the
embedding's ``padding_idx``: a row that never trains after an ``init:``).

Written (:func:`export`): ``slamkit`` lays a model folder out as ``UnitLM.save_pretrained`` does (above);
``hf`` writes the plain ``save_pretrained`` folder. Both carry the source's tokenizer files, are built under a
temporary name and renamed into place.

Hub ids are resolved by ``trainer.model.resolve_source`` (the local HF cache only) before they reach this
module: ``trainer.model`` imports this module, so this module takes local folders.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from scaling.datadir import TOKENIZER_JSON
from scaling.errors import ConfigError
from scaling.textio import parse_json
from scaling.shapes import UNITLM_MODEL_TYPE

#: ``UnitLM.base_model_prefix``: the wrapped causal LM's tensors are stored under it.
PREFIX = "lm."
FORMATS = ("slamkit", "hf")
CONFIG = "config.json"
GENERATION_CONFIG = "generation_config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
#: transformers' default ``max_shard_size`` of ``save_pretrained`` (SlamKit's Trainer keeps it).
MAX_SHARD_SIZE = "5GB"
#: A tokenizer folder's files, copied by :func:`export` when the source holds them.
TOKENIZER_FILES = (*TOKENIZER_JSON, "merges.txt", "tokenizer.model", "chat_template.jinja")
#: SlamKit's ids (config/model/default.yaml, passed to the base config): pad 0, bos = eos = 1.
SLAMKIT_IDS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 1}
#: ``base_model_name`` of an export when neither the caller nor the run's spec names one: SlamKit resolves it
#: with ``AutoConfig.from_pretrained`` to pick the config class, so it must be a model of the same family.
DEFAULT_BASE_MODEL = {"qwen2": "Qwen/Qwen2.5-0.5B", "llama": "meta-llama/Llama-3.2-1B"}
#: ``PretrainedConfig`` attributes of transformers 4.x that every SlamKit ``base_config`` carries, with their
#: defaults (transformers 5 keeps some of them and dropped the rest, the generation ones among them).
LEGACY_CONFIG_DEFAULTS = {
    "_attn_implementation_autoset": False, "add_cross_attention": False, "bad_words_ids": None,
    "begin_suppress_tokens": None, "chunk_size_feed_forward": 0, "cross_attention_hidden_size": None,
    "decoder_start_token_id": None, "diversity_penalty": 0.0, "do_sample": False, "early_stopping": False,
    "encoder_no_repeat_ngram_size": 0, "exponential_decay_length_penalty": None, "finetuning_task": None,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
    "is_decoder": False, "is_encoder_decoder": False, "label2id": {"LABEL_0": 0, "LABEL_1": 1}, "length_penalty": 1.0,
    "max_length": 20, "min_length": 0, "no_repeat_ngram_size": 0, "num_beam_groups": 1, "num_beams": 1,
    "num_return_sequences": 1, "output_attentions": False, "output_hidden_states": False, "output_scores": False,
    "prefix": None, "problem_type": None, "pruned_heads": {}, "remove_invalid_values": False, "repetition_penalty": 1.0,
    "return_dict": True, "return_dict_in_generate": False, "sep_token_id": None, "suppress_tokens": None,
    "task_specific_params": None, "temperature": 1.0, "tf_legacy_loss": False, "tie_encoder_decoder": False,
    "tokenizer_class": None, "top_k": 50, "top_p": 1.0, "torchscript": False, "typical_p": 1.0, "use_bfloat16": False,
}
#: transformers 5 config keys with no place in a 4.x ``base_config`` (``dtype`` and ``rope_parameters`` are
#: written as ``torch_dtype`` and ``rope_theta``/``rope_scaling``).
_V5_ONLY = ("dtype", "rope_parameters", "transformers_version")
#: keys of a ``base_config`` that are bookkeeping of the writer, not the LM's
_NOT_THE_LM = ("_attn_implementation_autoset", "_name_or_path", "transformers_version")


# -- reading ---------------------------------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no {path.name} in the model folder", source=str(path.parent)) from None
    obj, why = parse_json(raw, obj=True)
    if why is not None:
        raise ConfigError(f"is {why}", source=str(path))
    return obj


def is_unitlm(folder: str | Path) -> bool:
    """Whether ``folder`` (a local folder) holds a SlamKit UnitLM: its config.json's ``model_type`` is
    ``speech_language_model``. A folder without a readable config.json is not one (its loader says why)."""
    path = Path(folder) / CONFIG
    try:
        cfg = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(cfg, dict) and cfg.get("model_type") == UNITLM_MODEL_TYPE


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def unitlm_config(folder: str | Path) -> dict:
    """The UnitLM's config.json as SlamKit wrote it, checked: ``base_config`` a mapping whose ``model_type``
    transformers knows, both vocab sizes positive integers. Errors name the file and the field."""
    path = Path(folder) / CONFIG
    cfg = _read_json(path)
    if cfg.get("model_type") != UNITLM_MODEL_TYPE:
        raise ConfigError(f"is not a SlamKit UnitLM config (model_type {UNITLM_MODEL_TYPE!r})", source=str(path),
                          field="model_type", value=cfg.get("model_type"))
    base = cfg.get("base_config")
    if not isinstance(base, dict):
        raise ConfigError("a SlamKit UnitLM config holds its text LM's config under 'base_config' "
                          "(UnitLMConfig.base_config); it is missing or not a mapping", source=str(path),
                          field="base_config", value=base)
    from transformers import CONFIG_MAPPING

    mt = base.get("model_type")
    if not isinstance(mt, str) or mt not in CONFIG_MAPPING:
        raise ConfigError("is not a model type transformers knows", source=str(path), field="base_config.model_type",
                          value=mt)
    if not _positive_int(cfg.get("vocab_size")):
        raise ConfigError("must be a positive integer (the rows of the UnitLM's embeddings)", source=str(path),
                          field="vocab_size", value=cfg.get("vocab_size"))
    if not _positive_int(base.get("vocab_size")):
        raise ConfigError("must be a positive integer", source=str(path), field="base_config.vocab_size",
                          value=base.get("vocab_size"))
    return cfg


def lm_config(folder: str | Path):
    """The transformers config of the causal LM a UnitLM wraps: its ``base_config`` with the UnitLM's
    ``vocab_size`` (the rows of the weights) and without SlamKit's pad/bos/eos ids (see
    :func:`slamkit_conventions`)."""
    cfg = unitlm_config(folder)
    from transformers import CONFIG_MAPPING

    cls = CONFIG_MAPPING[cfg["base_config"]["model_type"]]
    try:
        own = set(cls().to_dict())
    except Exception:  # noqa: BLE001 - a config class without defaults: keep every key
        own = None
    # the 4.x defaults transformers 5 no longer has are left out (kept, they would be written back by save_pretrained)
    base = {k: v for k, v in cfg["base_config"].items() if k not in _NOT_THE_LM
            and not (own is not None and k not in own and k in LEGACY_CONFIG_DEFAULTS and v == LEGACY_CONFIG_DEFAULTS[k])}
    base["vocab_size"] = cfg["vocab_size"]
    for k in SLAMKIT_IDS:
        base[k] = None
    try:
        return cls.from_dict(base)
    except Exception as e:  # noqa: BLE001 - transformers raises many types for a bad config
        raise ConfigError(f"is not a valid {base['model_type']} config ({type(e).__name__}: {str(e)[:200]})",
                          source=str(Path(folder) / CONFIG), field="base_config") from None


def slamkit_conventions(folder: str | Path) -> dict | None:
    """SlamKit's conventions a UnitLM folder records (None for any other folder): ``pad_token_id`` (the label
    ``UnitLM.log_likelihood`` drops), ``bos_token_id``, ``eos_token_id`` (from ``base_config``, where SlamKit
    puts them), ``vocab_size`` (rows), ``text_vocab_size`` (``base_config.vocab_size``: the text LM's before the
    resize), ``base_model_name``, ``twist_init``, and ``tokeniser_type``: ``unit`` (``UnitTokeniser``: units
    + PAD + BOS/EOS, so fewer rows than the text LM had; ``bos_eos_token_id`` is then given too) or
    ``interleaved`` (``InterleavingTokeniser``: the text vocabulary + units + ``<speech>``/``<text>``), inferred
    from the two vocab sizes (``tokeniser_type_from`` says so: SlamKit does not record its tokeniser)."""
    if not is_unitlm(folder):
        return None
    cfg = unitlm_config(folder)
    base = cfg["base_config"]
    vocab, text_vocab = cfg["vocab_size"], base["vocab_size"]
    out = {"format": "slamkit", "base_model_name": cfg.get("base_model_name"), "twist_init": cfg.get("twist_init"),
           "vocab_size": vocab, "text_vocab_size": text_vocab,
           **{k: base.get(k) for k in SLAMKIT_IDS},
           "tokeniser_type": "unit" if vocab < text_vocab else "interleaved",
           "tokeniser_type_from": "vocab_size < base_config.vocab_size" if vocab < text_vocab
           else "vocab_size >= base_config.vocab_size"}
    if out["tokeniser_type"] == "unit":
        out["bos_eos_token_id"] = base.get("bos_token_id")
    return out


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a model folder: the shards its index names, or model.safetensors, or every
    ``*.safetensors`` file."""
    folder = Path(folder)
    index = folder / INDEX_FILE
    if index.is_file():
        wm = _read_json(index).get("weight_map")
        if not isinstance(wm, dict) or not wm or not all(isinstance(v, str) for v in wm.values()):
            raise ConfigError("needs a weight_map of tensor name -> file", source=str(index), field="weight_map")
        files = sorted(set(wm.values()))
        for f in files:
            if not (folder / f).is_file():
                raise ConfigError("names a shard that is not in the folder", source=str(index), field="weight_map", value=f)
        return [folder / f for f in files]
    if (folder / SINGLE_FILE).is_file():
        return [folder / SINGLE_FILE]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ConfigError("no *.safetensors weights in the model folder", source=str(folder))
    return files


def read_tensors(files: list[Path], *, prefix: str = "", dtype: torch.dtype | None = None,
                 skip=lambda name: False) -> dict[str, torch.Tensor]:
    """Every tensor of the safetensors ``files``, read file by file (no model built), keyed by its name with
    ``prefix`` stripped, each converted to ``dtype`` as it is read (None: as stored); names for which
    ``skip(name)`` holds are left out. The one reader of model weights (``trainer.model.full_state_dict``,
    :func:`lm_state_dict`, :func:`export`)."""
    from safetensors import safe_open

    out = {}
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():
                if skip(k):
                    continue
                t = fh.get_tensor(k)
                out[k[len(prefix):]] = t if dtype is None else t.to(dtype)
    return out


def _headers(files: list[Path]) -> dict[str, tuple[Path, tuple, str]]:
    """name -> (file, shape, dtype) from the safetensors headers (no tensor is read)."""
    from safetensors import safe_open

    out = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as fh:
                for k in fh.keys():
                    sl = fh.get_slice(k)
                    out[k] = (f, tuple(sl.get_shape()), sl.get_dtype())
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 - safetensors' own error types: a damaged file
            raise ConfigError(f"is not a readable safetensors file ({type(e).__name__}: {str(e)[:200]})",
                              source=str(f)) from None
    return out


def _expected_shapes(config) -> dict[str, tuple]:
    """name -> shape of every tensor a model of ``config`` holds (built on the meta device: no memory)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _stale_buffer(name: str) -> bool:
    """A rotary-frequency buffer some older checkpoints stored: recomputed by the model, never loaded."""
    return name.endswith("rotary_emb.inv_freq")


def _check_tensors(folder: Path, files: list[Path], config, prefix: str) -> dict[str, tuple[Path, tuple, str]]:
    """The stored tensors (prefix stripped) against the model of ``config``: every name under ``prefix``, none
    missing or extra (a tied ``lm_head.weight`` may be absent), every shape the config's. Returns the headers."""
    found = {}
    for k, (f, shape, dt) in _headers(files).items():
        if not k.startswith(prefix):
            raise ConfigError(f"a SlamKit UnitLM stores the text LM's tensors under the '{prefix}' prefix (UnitLM.lm); "
                              "this tensor has none", source=str(f), field="tensor name", value=k)
        found[k[len(prefix):]] = (f, shape, dt)
    want = _expected_shapes(config)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    where = str(files[0]) if len(files) == 1 else str(folder)
    missing = [k for k in want if k not in found and not (tied and k == "lm_head.weight")]
    if missing:
        raise ConfigError(f"{len(missing)} tensors of the {config.model_type} model are missing", source=where,
                          field="tensor name", value=prefix + missing[0])
    extra = [k for k in found if k not in want and not _stale_buffer(k)]
    if extra:
        raise ConfigError(f"{len(extra)} tensors are not part of the {config.model_type} model of {CONFIG}",
                          source=where, field="tensor name", value=prefix + extra[0])
    for k, (f, shape, _) in found.items():
        if shape != want[k]:
            field = "vocab_size" if k in ("model.embed_tokens.weight", "lm_head.weight") else "tensor shape"
            raise ConfigError(f"{prefix + k} is {list(shape)} but {CONFIG} makes it {list(want[k])}", source=str(f),
                              field=field, value=list(shape))
    return found


def _stored_dtype(found: dict) -> torch.dtype:
    """The dtype the weights are stored in (of the first floating tensor)."""
    names = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}
    for _, _, dt in found.values():
        if dt in names:
            return names[dt]
    return torch.float32


def _lm_class(config):
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        return MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except KeyError:
        raise ConfigError("transformers has no causal LM of this model type", field="base_config.model_type",
                          value=config.model_type) from None


def load_lm(folder: str | Path, *, attn: str | None = None, dtype: torch.dtype | None = torch.float32):
    """The causal LM a UnitLM folder wraps, as the plain transformers model of its ``base_config`` (tied
    embeddings tied, one file or shards), in ``dtype`` (fp32 master weights by default; None: as stored).
    The weights are read once (:func:`lm_state_dict`, after the names and shapes in the safetensors headers
    were checked against the config) and handed to ``from_pretrained``, which keeps them (no copy when they
    are stored in ``dtype``)."""
    folder = Path(folder)
    config = lm_config(folder)
    cls = _lm_class(config)
    sd = lm_state_dict(folder, dtype=dtype, config=config)
    stored = next(iter(sd.values())).dtype if dtype is None else dtype
    return cls.from_pretrained(None, config=config, state_dict=sd, dtype=stored, attn_implementation=attn)


def lm_state_dict(folder: str | Path, *, dtype: torch.dtype | None = None, config=None) -> dict[str, torch.Tensor]:
    """The wrapped LM's tensors (``lm.`` stripped), checked against its config (``config``: :func:`lm_config`,
    read when not given), read file by file from the safetensors (no model built), each converted to
    ``dtype`` as it is read (None: as stored). A tied ``lm_head.weight`` is absent (as in the files)."""
    folder = Path(folder)
    files = weight_files(folder)
    _check_tensors(folder, files, config if config is not None else lm_config(folder), PREFIX)
    return read_tensors(files, prefix=PREFIX, dtype=dtype, skip=_stale_buffer)


# -- writing ---------------------------------------------------------------------------------------------------

def _json_text(obj: dict) -> str:
    """JSON as transformers writes config files: sorted keys, indent 2, a final newline."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def legacy_base_config(config, *, rows: int, dtype: torch.dtype, base_model_name: str) -> dict:
    """``config`` (a transformers 5 config) as SlamKit's ``base_config``: the transformers 4.x layout (the 4.x
    ``PretrainedConfig`` defaults, ``rope_theta``/``rope_scaling``, ``torch_dtype``), SlamKit's pad/bos/eos ids,
    ``_name_or_path`` the base model, ``use_cache`` true (the text LM's own setting), ``vocab_size`` ``rows``
    (SlamKit's resize at load is then a no-op), ``torch_dtype`` null for float32 weights (SlamKit's default
    config) and the dtype's name otherwise (its Slam recipe sets bfloat16)."""
    d = config.to_dict()
    base = dict(LEGACY_CONFIG_DEFAULTS)
    for k, v in d.items():
        if k in _V5_ONLY:
            continue
        if k == "layer_types" and all(t == "full_attention" for t in (v or [])):
            continue  # transformers 4.48's Qwen2 has no layer types: full attention everywhere says the same
        base[k] = v
    if "rope_parameters" in d or "rope_theta" not in base:
        rope = dict(d.get("rope_parameters") or {})
        base["rope_theta"] = rope.pop("rope_theta", None)
        base["rope_scaling"] = None if set(rope) <= {"rope_type"} and rope.get("rope_type", "default") == "default" else rope
    if not base.get("architectures"):
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        arch = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type)
        base["architectures"] = [arch] if arch else None
    base.update(SLAMKIT_IDS)
    base.update(_name_or_path=base_model_name, use_cache=True, vocab_size=rows,
                torch_dtype=None if dtype == torch.float32 else _dtype_name(dtype))
    return base


def unitlm_config_dict(config, *, rows: int, dtype: torch.dtype, base_model_name: str, twist_init: bool) -> dict:
    """The config.json ``UnitLM.save_pretrained`` writes for a UnitLM wrapping a model of ``config`` with
    ``rows`` embedding rows stored in ``dtype``, built from SlamKit's default model config (config/model/
    default.yaml + twist.yaml: dropout, attention_dropout and layerdrop 0, use_cache false, pad 0, bos = eos = 1)."""
    import transformers

    base = legacy_base_config(config, rows=rows, dtype=dtype, base_model_name=base_model_name)
    top = {"architectures": ["UnitLM"], "attention_dropout": 0.0, "base_config": base, "base_model_name": base_model_name,
           "dropout": 0.0, "layerdrop": 0.0, "max_position_embeddings": base.get("max_position_embeddings"),
           "model_type": UNITLM_MODEL_TYPE, "torch_dtype": _dtype_name(dtype),
           "transformers_version": transformers.__version__, "trust_remote_code": None, "twist_init": bool(twist_init),
           "use_cache": False, "use_safetensors": None, "vocab_size": rows}
    if not base.get("tie_word_embeddings", True):
        top["tie_word_embeddings"] = False  # the top level copies the base's; true (the default) is not written
    return top


def _generation_config(use_cache: bool) -> dict:
    import transformers

    return {"_from_model_config": True, "transformers_version": transformers.__version__, "use_cache": use_cache}


def _run_provenance(src: Path) -> tuple[str | None, bool | None]:
    """(base model, twist init) of a run's ``model/`` folder, from the run's spec.yaml beside it: the init's
    source (a hub id, a local folder, the ``model/`` folder of an ``run:<id>`` text LM; for an init that is
    itself a SlamKit UnitLM, local or in the local HF cache, its own base model) and whether there was one.
    (None, None) for any other folder."""
    spec_path = src.parent / "spec.yaml"
    if src.name != "model" or not spec_path.is_file():
        return None, None
    from scaling.initref import InitRef
    from scaling.spec import RunSpec

    spec = RunSpec.load(spec_path)
    ref = InitRef.parse(spec.init, source=str(spec_path))
    if ref.is_random:
        return None, False
    name = ref.source(src.parent.parent)
    folder = Path(name).resolve() if ref.kind in ("local", "run") else None
    if ref.kind == "hub":
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, CONFIG)
        folder = Path(cached).parent if isinstance(cached, str) else None
    if folder is not None and is_unitlm(folder):
        # SlamKit resolves base_model_name with AutoConfig, which does not know UnitLM configs: the text LM's name
        return unitlm_config(folder).get("base_model_name"), True
    return (str(folder) if ref.kind != "hub" else name), True


def _ordered(tensors: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """``tensors`` in the model's own order (what ``save_pretrained`` shards by), a tied ``lm_head`` dropped."""
    order = list(_expected_shapes(config))
    tied = bool(getattr(config, "tie_word_embeddings", False))
    return {k: tensors[k] for k in order if k in tensors and not (tied and k == "lm_head.weight")}


def _write_weights(tensors: dict[str, torch.Tensor], out: Path, *, max_shard_size) -> None:
    """safetensors as ``save_pretrained`` writes them: one file, or shards of at most ``max_shard_size`` and
    the index (total size, tensor -> file)."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    split = split_torch_state_dict_into_shards(tensors, filename_pattern="model{suffix}.safetensors",
                                               max_shard_size=max_shard_size)
    for fname, names in split.filename_to_tensors.items():
        save_file({n: tensors[n].contiguous() for n in names}, str(out / fname), metadata={"format": "pt"})
    if split.is_sharded:
        index = {"metadata": {"total_size": split.metadata["total_size"]}, "weight_map": split.tensor_to_filename}
        (out / INDEX_FILE).write_text(_json_text(index), encoding="utf-8")


def _hf_source(src: Path):
    """(config, checked headers) of a plain Hugging Face model folder."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(src))
    except Exception as e:  # noqa: BLE001 - transformers raises many types for a folder that is not a model
        raise ConfigError(f"cannot read the model config ({type(e).__name__}: {str(e)[:200]})",
                          source=str(src / CONFIG)) from None
    files = weight_files(src)
    return config, files, _check_tensors(src, files, config, "")


def _write_slamkit(src: Path, out: Path, *, base_model_name: str | None, twist_init: bool | None, max_shard_size) -> None:
    if is_unitlm(src):  # SlamKit's own fields kept as SlamKit wrote them; the weights laid out again
        top = unitlm_config(src)
        if base_model_name is not None:
            top["base_model_name"] = top["base_config"]["_name_or_path"] = base_model_name
        if twist_init is not None:
            top["twist_init"] = bool(twist_init)
        config = lm_config(src)
        files = weight_files(src)
        found = _check_tensors(src, files, config, PREFIX)
        prefix = PREFIX
        gen_path = src / GENERATION_CONFIG
        gen = _read_json(gen_path) if gen_path.is_file() else _generation_config(bool(top.get("use_cache", False)))
    else:
        config, files, found = _hf_source(src)
        prefix = ""
        run_base, run_twist = _run_provenance(src)
        name = base_model_name or run_base or DEFAULT_BASE_MODEL.get(config.model_type)
        if name is None:
            raise ConfigError(f"SlamKit needs a base model of the same family ({config.model_type}) to build the config "
                              "class; name one", field="base_model_name")
        rows = found["model.embed_tokens.weight"][1][0]
        top = unitlm_config_dict(config, rows=rows, dtype=_stored_dtype(found), base_model_name=name,
                                 twist_init=twist_init if twist_init is not None else run_twist is not False)
        gen = _generation_config(False)
    tensors = {PREFIX + k: v for k, v in _ordered(read_tensors(files, prefix=prefix), config).items()}
    _write_weights(tensors, out, max_shard_size=max_shard_size)
    (out / CONFIG).write_text(_json_text(top), encoding="utf-8")
    (out / GENERATION_CONFIG).write_text(_json_text(gen), encoding="utf-8")


def _write_hf(src: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM

    if is_unitlm(src):
        model = load_lm(src, dtype=None)
    else:
        _, _, found = _hf_source(src)
        model = AutoModelForCausalLM.from_pretrained(str(src), dtype=_stored_dtype(found), use_safetensors=True)
    model.config.use_cache = False  # as every model folder of ours
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.use_cache = False
    model.save_pretrained(str(out))


def export(checkpoint: str | Path, out: str | Path, fmt: str = "slamkit", *, base_model_name: str | None = None,
           twist_init: bool | None = None, max_shard_size: int | str = MAX_SHARD_SIZE) -> Path:
    """Write the model folder ``checkpoint`` (ours, any Hugging Face causal LM folder, or a SlamKit UnitLM) to
    ``out`` as a SlamKit UnitLM folder (``fmt="slamkit"``, laid out as ``UnitLM.save_pretrained`` does) or a
    plain ``save_pretrained`` folder (``fmt="hf"``), with the checkpoint's tokenizer files; weights in the dtype
    they are stored in, bit for bit. ``base_model_name`` / ``twist_init`` of a slamkit export: by default the
    UnitLM's own, else the run's init when ``checkpoint`` is a run's ``model/`` folder, else SlamKit's default
    model of the family (:data:`DEFAULT_BASE_MODEL`) and true. Built under a temporary name, renamed into place."""
    from scaling import atomic
    from scaling.rundir import writing

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format; known: {', '.join(FORMATS)}", field="format", value=fmt)
    src, out = Path(checkpoint), Path(out)
    if not (src / CONFIG).is_file():
        raise ConfigError(f"not a model folder (no {CONFIG})", source=str(src))
    if out.exists() and out.resolve() == src.resolve():
        raise ConfigError("is the checkpoint itself; export to another folder", source=str(out), field="out")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with writing(tmp):  # a full disk or no permission: an error naming the folder, its partial copy removed
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            if fmt == "slamkit":
                _write_slamkit(src, tmp, base_model_name=base_model_name, twist_init=twist_init,
                               max_shard_size=max_shard_size)
            else:
                _write_hf(src, tmp)
            for name in TOKENIZER_FILES:
                if (src / name).is_file():
                    shutil.copyfile(src / name, tmp / name)
            atomic.replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
