"""SlamKit ``UnitLM`` folders built by tests, laid out as slp-rl/slamkit's ``UnitLM.save_pretrained`` writes them.

This is the tests' own description of the format, written out literally (it does not use trainer.slamkit_ckpt,
whose reader and writer it checks). It was checked against folders SlamKit itself wrote (slamkit HEAD 388b402,
``UnitLM(UnitLMConfig(**config_args)).save_pretrained(...)`` with SlamKit's default model config under
transformers 4.48.1: tiny Qwen2 tied and Llama untied text LMs, fp32 and bf16, one file and shards): the same
config.json and generation_config.json keys and values, the same safetensors headers and shard index.

A UnitLM folder holds:

- config.json (``json.dumps(indent=2, sort_keys=True)`` + newline): the ``UnitLMConfig`` fields (top level) and
  the text LM's whole transformers-4.x config under ``base_config``, whose ``vocab_size`` is the text LM's own
  (SlamKit resizes the embeddings to the top-level ``vocab_size`` after building the LM) and whose
  pad/bos/eos ids are SlamKit's (0/1/1);
- generation_config.json: ``{"_from_model_config": true, "transformers_version": ..., "use_cache": false}``;
- model.safetensors (metadata ``{"format": "pt"}``), or shards ``model-0000i-of-0000n.safetensors`` with
  ``model.safetensors.index.json``: the wrapped LM's tensors under ``lm.``, no ``lm.lm_head.weight`` when tied;
- no tokenizer (SlamKit builds its tokenisers from its config); ``tokenizer_dir`` adds ours, so that
  `scaling eval` / `scaling generate` can read the folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

#: transformers 4.48's PretrainedConfig attributes in every base_config SlamKit writes, with their defaults.
_PRETRAINED_4X = {
    "_attn_implementation_autoset": False, "add_cross_attention": False, "bad_words_ids": None,
    "begin_suppress_tokens": None, "chunk_size_feed_forward": 0, "cross_attention_hidden_size": None,
    "decoder_start_token_id": None, "diversity_penalty": 0.0, "do_sample": False, "early_stopping": False,
    "encoder_no_repeat_ngram_size": 0, "exponential_decay_length_penalty": None, "finetuning_task": None,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
    "is_decoder": False, "is_encoder_decoder": False, "label2id": {"LABEL_0": 0, "LABEL_1": 1},
    "length_penalty": 1.0, "max_length": 20, "min_length": 0, "no_repeat_ngram_size": 0, "num_beam_groups": 1,
    "num_beams": 1, "num_return_sequences": 1, "output_attentions": False, "output_hidden_states": False,
    "output_scores": False, "prefix": None, "problem_type": None, "pruned_heads": {}, "remove_invalid_values": False,
    "repetition_penalty": 1.0, "return_dict": True, "return_dict_in_generate": False, "sep_token_id": None,
    "suppress_tokens": None, "task_specific_params": None, "temperature": 1.0, "tf_legacy_loss": False,
    "tie_encoder_decoder": False, "tokenizer_class": None, "top_k": 50, "top_p": 1.0, "torchscript": False,
    "typical_p": 1.0, "use_bfloat16": False,
}


def base_config(cfg, *, text_vocab: int, base_model_name: str, dtype: torch.dtype = torch.float32) -> dict:
    """The base_config SlamKit writes for the text LM of the transformers config ``cfg`` (Qwen2 or Llama)."""
    family = cfg.model_type
    out = dict(_PRETRAINED_4X)
    out.update({
        "_name_or_path": base_model_name, "architectures": [{"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}[family]],
        "attention_dropout": cfg.attention_dropout, "bos_token_id": 1, "eos_token_id": 1, "pad_token_id": 0,
        "hidden_act": cfg.hidden_act, "hidden_size": cfg.hidden_size, "initializer_range": cfg.initializer_range,
        "intermediate_size": cfg.intermediate_size, "max_position_embeddings": cfg.max_position_embeddings,
        "model_type": family, "num_attention_heads": cfg.num_attention_heads, "num_hidden_layers": cfg.num_hidden_layers,
        "num_key_value_heads": cfg.num_key_value_heads, "rms_norm_eps": cfg.rms_norm_eps, "rope_scaling": None,
        "rope_theta": cfg.rope_parameters["rope_theta"], "tie_word_embeddings": cfg.tie_word_embeddings,
        "torch_dtype": None if dtype == torch.float32 else str(dtype).removeprefix("torch."), "use_cache": True,
        "vocab_size": text_vocab,
    })
    if family == "qwen2":
        out.update(max_window_layers=cfg.max_window_layers, sliding_window=None, use_sliding_window=False)
    else:
        out.update(attention_bias=cfg.attention_bias, head_dim=cfg.head_dim, mlp_bias=cfg.mlp_bias,
                   pretraining_tp=cfg.pretraining_tp)
    return out


def unitlm_config(cfg, *, vocab_size: int, text_vocab: int, base_model_name: str, dtype: torch.dtype = torch.float32,
                  twist_init: bool = True, transformers_version: str = "4.48.1") -> dict:
    """config.json of a UnitLM made with SlamKit's default model config (config/model/default.yaml + twist.yaml)."""
    base = base_config(cfg, text_vocab=text_vocab, base_model_name=base_model_name, dtype=dtype)
    out = {"architectures": ["UnitLM"], "attention_dropout": 0.0, "base_config": base, "base_model_name": base_model_name,
           "dropout": 0.0, "layerdrop": 0.0, "max_position_embeddings": base["max_position_embeddings"],
           "model_type": "speech_language_model", "torch_dtype": str(dtype).removeprefix("torch."),
           "transformers_version": transformers_version, "trust_remote_code": None, "twist_init": twist_init,
           "use_cache": False, "use_safetensors": None, "vocab_size": vocab_size}
    if not cfg.tie_word_embeddings:
        out["tie_word_embeddings"] = False
    return out


def _dump(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def unitlm_tensors(model, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The tensors UnitLM.save_pretrained stores for the causal LM ``model``: its state dict under ``lm.`` in
    module order, ``lm.lm_head.weight`` left out when the embeddings are tied."""
    tied = model.config.tie_word_embeddings
    out = {}
    for k, v in model.state_dict().items():
        if tied and k == "lm_head.weight":
            continue
        v = v.detach()
        out["lm." + k] = (v if dtype is None else v.to(dtype)).contiguous().clone()
    return out


def write_unitlm(model, folder, *, text_vocab: int | None = None, base_model_name: str = "Qwen/Qwen2.5-0.5B",
                 dtype: torch.dtype | None = None, shards: int = 1, twist_init: bool = True, tokenizer_dir=None,
                 transformers_version: str = "4.48.1") -> Path:
    """Write the causal LM ``model`` (a transformers Qwen2/Llama) into ``folder`` as a SlamKit UnitLM wrapping it
    (``text_vocab``: the text LM's vocab_size recorded in base_config, default the model's rows; ``dtype``:
    the stored dtype, default the model's; ``shards`` > 1: that many shards and the index)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = unitlm_tensors(model, dtype)
    stored = next(iter(tensors.values())).dtype
    rows = model.get_input_embeddings().weight.shape[0]
    _dump(folder / "config.json", unitlm_config(model.config, vocab_size=rows, text_vocab=text_vocab or rows,
                                                base_model_name=base_model_name, dtype=stored, twist_init=twist_init,
                                                transformers_version=transformers_version))
    _dump(folder / "generation_config.json",
          {"_from_model_config": True, "transformers_version": transformers_version, "use_cache": False})
    if shards <= 1:
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        names = list(tensors)
        per = -(-len(names) // shards)
        weight_map = {}
        for i in range(shards):
            fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = names[i * per:(i + 1) * per]
            save_file({n: tensors[n] for n in part}, str(folder / fname), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, fname))
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        _dump(folder / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})
    if tokenizer_dir is not None:
        from trainer.data.tokenizer import load_tokenizer

        load_tokenizer(tokenizer_dir).save_pretrained(str(folder))
    return folder


def stored_tensors(folder) -> dict[str, torch.Tensor]:
    """Every tensor of a model folder's safetensors files, as stored (name -> tensor)."""
    from safetensors import safe_open

    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():
                out[k] = fh.get_tensor(k)
    return out


def safetensors_header(path) -> bytes:
    """The JSON header of a safetensors file (names, dtypes, shapes, offsets, metadata), as bytes."""
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return raw[8:8 + n]
