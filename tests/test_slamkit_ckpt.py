"""SlamKit checkpoints (trainer/slamkit_ckpt.py): a ``UnitLM.save_pretrained`` folder is read wherever a checkpoint
is accepted (`scaling eval`, `scaling generate`, a run's ``init:``, one process and sharded) as the causal LM it
wraps, and `scaling export --format slamkit|hf` writes SlamKit's layout and back, bit for bit.

The UnitLM folders are built here by tests/helpers/slamkit_fixtures.py, the tests' own literal description of
SlamKit's format (checked against folders SlamKit itself wrote), around tiny Qwen2 (tied) and Llama (untied)
models; nothing is downloaded."""
from __future__ import annotations

import copy
import dataclasses
import json
import shutil

import pytest
import torch

from scaling.cli import main
from scaling.datadir import DataDir
from scaling.shapes import DEMO, shape_from_hf_config

from helpers.slamkit_fixtures import safetensors_header, stored_tensors, write_unitlm

#: family -> the toy-xs shape of that family (Qwen2 tied as Qwen2.5-0.5B, Llama untied)
FAMILIES = {"qwen2": dict(family="qwen2", tie_embeddings=True, qkv_bias=True),
            "llama": dict(family="llama", tie_embeddings=False, qkv_bias=False)}
BENCH = ["swuggy", "ssc"]


def _shape(family: str, vocab: int):
    return dataclasses.replace(DEMO["toy-xs"], vocab_size=vocab, **FAMILIES[family])


@pytest.fixture(scope="module")
def folders(prepared, tmp_path_factory):
    """Per family: an HF folder of ours (model + tokenizer) and the same model as SlamKit UnitLM folders: one
    file, and (bf16 weights as SlamKit's Slam recipe stores them) in three shards with the index."""
    from trainer.model import build_model

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("slamkit")
    m = DataDir.open(prepared, verify="none").manifest
    out = {}
    for i, family in enumerate(FAMILIES):
        model = build_model(_shape(family, m["speech_model_vocab"]), seed=10 + i, attn="sdpa")
        hf = root / f"{family}-hf"
        model.save_pretrained(str(hf))
        from trainer.data.tokenizer import load_tokenizer

        load_tokenizer(prepared / "tokenizer").save_pretrained(str(hf))
        kw = dict(text_vocab=m["text_model_vocab"], tokenizer_dir=prepared / "tokenizer", base_model_name=f"acme/{family}-text")
        out[family] = {"model": model, "hf": hf, "unit": write_unitlm(model, root / f"{family}-unit", **kw),
                       "sharded": write_unitlm(model, root / f"{family}-unit-sharded", shards=3, dtype=torch.bfloat16, **kw)}
    out["text_vocab"], out["rows"] = m["text_model_vocab"], m["speech_model_vocab"]
    return out


IDS = torch.tensor([[5, 17, 300, 301, 302, 2, 40, 41], [7, 7, 7, 310, 320, 330, 340, 1]])


def _logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layout", ["unit", "sharded"])
def test_unitlm_reads_as_the_model_it_wraps(folders, family, layout):
    """load_model / load_config / full_state_dict of a UnitLM folder: the wrapped LM with its rows, its tensors
    (tied or not), exactly its logits, fp32 master weights (bf16-stored weights upcast), SlamKit's conventions
    returned apart."""
    from trainer.model import full_state_dict, load_config, load_model
    from trainer.slamkit_ckpt import is_unitlm, slamkit_conventions

    f = folders[family]
    src, rows, text_vocab = f[layout], folders["rows"], folders["text_vocab"]
    assert is_unitlm(src) and not is_unitlm(f["hf"]) and slamkit_conventions(f["hf"]) is None
    assert slamkit_conventions(src) == {
        "format": "slamkit", "base_model_name": f"acme/{family}-text", "twist_init": True, "vocab_size": rows,
        "text_vocab_size": text_vocab, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 1,
        "tokeniser_type": "interleaved", "tokeniser_type_from": "vocab_size >= base_config.vocab_size"}
    ref = f["model"]
    if layout == "sharded":  # the fp32 model with bf16-rounded weights (its rotary buffers untouched)
        ref = copy.deepcopy(ref)
        with torch.no_grad():
            for p in ref.parameters():
                p.copy_(p.to(torch.bfloat16))
    model = load_model(src)
    assert type(model) is type(ref) and model.dtype == torch.float32 and model.config.use_cache is False
    assert model.config.vocab_size == rows and model.config.pad_token_id is None  # SlamKit's ids: conventions, not the LM's
    tied = FAMILIES[family]["tie_embeddings"]
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    want = ref.state_dict()
    got = model.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert torch.equal(_logits(model), _logits(ref))
    if layout == "sharded":
        return
    cfg, ref_cfg = load_config(src), load_config(f["hf"])
    for k in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "intermediate_size", "vocab_size", "tie_word_embeddings", "rms_norm_eps", "max_position_embeddings"):
        assert getattr(cfg, k) == getattr(ref_cfg, k), k
    assert cfg.rope_parameters["rope_theta"] == ref_cfg.rope_parameters["rope_theta"]
    read = lambda p: json.loads((p / "config.json").read_text())  # noqa: E731
    assert shape_from_hf_config(read(src)) == shape_from_hf_config(read(f["hf"])) == _shape(family, rows)
    # the meta-device path (rank 0 reads the safetensors): the same tensors, grown rows included
    kw = dict(new_rows=rows + 64, real_rows=text_vocab, init="mean", seed=3)
    a, b = full_state_dict(src, **kw), full_state_dict(f["hf"], **kw)
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in b)
    assert (a["lm_head.weight"] is a["model.embed_tokens.weight"]) == tied


def test_hub_id_of_a_unitlm_in_the_local_cache(folders, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from trainer.model import load_model

    snap = tmp_path / "hub" / "models--slprl--sims-tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(folders["llama"]["sharded"], snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model, ref = load_model("slprl/sims-tiny"), load_model(folders["llama"]["sharded"])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))


def test_unitlm_evaluates_and_generates_as_the_unwrapped_model(folders, prepared, tmp_path):
    """`scaling eval` and `scaling generate` on a UnitLM folder: the scores and samples of the HF folder."""
    f = folders["qwen2"]
    res = {}
    for name in ("unit", "hf"):
        out = tmp_path / f"{name}.json"
        assert main(["eval", str(f[name]), "--data", str(prepared), "--benchmarks", ",".join(BENCH), "--max-items", "4",
                     "--resamples", "10", "--json", str(out)]) == 0
        res[name] = json.loads(out.read_text())["metrics"]
    assert set(res["unit"]) == set(BENCH) and res["unit"] == res["hf"]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"u{i}", "units": list(range(10 * i, 10 * i + 60))}) + "\n"
                               for i in range(2)))
    gens = {}
    for name in ("unit", "hf"):
        assert main(["generate", str(f[name]), "--prompts", str(prompts), "--out", str(tmp_path / f"g-{name}"),
                     "--max-new-tokens", "6", "--seed", "3"]) == 0
        gens[name] = (tmp_path / f"g-{name}" / "generations.jsonl").read_text()
    assert gens["unit"] == gens["hf"] and len(gens["unit"].splitlines()) == 2


@pytest.fixture(scope="module")
def trained(folders, prepared, tmp_path_factory):
    """A run of ours initialised from the Qwen2 UnitLM folder (init: the folder), trained a few steps."""
    from helpers.runs import toy_spec, train_spec

    spec = toy_spec(prepared, tokens=768, init=str(folders["qwen2"]["unit"]))
    run, rec = train_spec(tmp_path_factory.mktemp("run"), spec)
    return run, rec


def test_unitlm_initialises_a_run_in_one_process_and_sharded(folders, prepared, trained, tmp_path):
    """init: a UnitLM folder: the one-process and the sharded start are the wrapped model's, and the run trains."""
    from helpers.runs import toy_spec
    from scaling.rundir import RunDir
    from trainer.loop import init_model, init_sharded

    f = folders["qwen2"]
    m = DataDir.open(prepared, verify="none").manifest
    spec = toy_spec(prepared, tokens=768, init=str(f["unit"]))
    run = RunDir(tmp_path / "runs" / "r")
    want = f["model"].state_dict()
    one = init_model(spec, run, m).state_dict()
    sharded = init_sharded(spec, run, m, torch.device("cpu"), 1)[0].state_dict()
    for got in (one, sharded):
        assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
    run, rec = trained
    assert run.status == "done" and rec["tokens"] == 768 and rec["params"] == sum(p.numel() for p in f["model"].parameters())


def test_export_round_trips_bit_for_bit(folders, trained, tmp_path, capsys):
    """A model trained here -> `scaling export --format slamkit` -> a UnitLM folder whose tensors and logits are
    the model's bit for bit (init recorded: twist_init, base_model_name the init folder) -> `--format hf` -> the
    original tensors again; and a UnitLM folder -> hf -> slamkit gives its tensors again."""
    from trainer.model import load_model
    from trainer.slamkit_ckpt import is_unitlm, unitlm_config

    run, _ = trained
    src = run.model_path
    unit, back = tmp_path / "unit", tmp_path / "back"
    assert main(["export", str(src), "--format", "slamkit", "--out", str(unit)]) == 0
    cfg = unitlm_config(unit)
    # the run's init (a UnitLM) recorded: twist init, and its text LM as the base model SlamKit resolves
    assert is_unitlm(unit) and cfg["twist_init"] is True and cfg["base_model_name"] == "acme/qwen2-text"
    orig = stored_tensors(src)
    got = stored_tensors(unit)
    assert sorted(got) == sorted("lm." + k for k in orig)
    assert all(got["lm." + k].dtype == v.dtype and torch.equal(got["lm." + k], v) for k, v in orig.items())
    assert (unit / "tokenizer.json").read_bytes() == (src / "tokenizer.json").read_bytes()
    a, b = load_model(src), load_model(unit)
    assert torch.equal(_logits(a), _logits(b))
    assert main(["export", str(unit), "--format", "hf", "--out", str(back)]) == 0
    again = stored_tensors(back)
    assert sorted(again) == sorted(orig) and all(again[k].dtype == v.dtype and torch.equal(again[k], v)
                                                 for k, v in orig.items())
    assert not is_unitlm(back) and torch.equal(_logits(load_model(back)), _logits(a))
    assert (back / "tokenizer.json").read_bytes() == (src / "tokenizer.json").read_bytes()
    capsys.readouterr()
    # the other way: a SlamKit folder (bf16 shards) -> hf -> slamkit: its tensors, bit for bit
    sk = folders["llama"]["sharded"]
    assert main(["export", str(sk), "--format", "hf", "--out", str(tmp_path / "sk-hf")]) == 0
    assert main(["export", str(tmp_path / "sk-hf"), "--format", "slamkit", "--out", str(tmp_path / "sk-again")]) == 0
    want, got = stored_tensors(sk), stored_tensors(tmp_path / "sk-again")
    assert unitlm_config(tmp_path / "sk-again")["base_model_name"] == "meta-llama/Llama-3.2-1B"  # SlamKit's, by family
    assert sorted(want) == sorted(got) and all(got[k].dtype == torch.bfloat16 and torch.equal(got[k], want[k])
                                               for k in want)


@pytest.mark.parametrize("family", FAMILIES)
def test_export_lays_out_a_folder_as_slamkit_writes_it(folders, tmp_path, family):
    """`export --format slamkit` writes what UnitLM.save_pretrained writes for that model (the fixture's literal
    layout): config.json and generation_config.json (but the writing transformers' version), the safetensors
    headers byte for byte; shards with their index, read back equal."""
    from trainer.model import load_model
    from trainer.slamkit_ckpt import export

    f = folders[family]
    out = export(f["hf"], tmp_path / "out", "slamkit", base_model_name="Qwen/Qwen2.5-0.5B")
    ref = write_unitlm(f["model"], tmp_path / "ref")
    for name in ("config.json", "generation_config.json"):
        a, b = json.loads((out / name).read_text()), json.loads((ref / name).read_text())
        assert a.pop("transformers_version") and b.pop("transformers_version") == "4.48.1"
        assert a == b, name
    assert safetensors_header(out / "model.safetensors") == safetensors_header(ref / "model.safetensors")
    assert ("lm.lm_head.weight" in stored_tensors(out)) == (family == "llama")
    sharded = export(f["hf"], tmp_path / "sharded", "slamkit", max_shard_size=20_000)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    files = sorted(p.name for p in sharded.glob("*.safetensors"))
    assert len(files) > 2 and sorted(set(index["weight_map"].values())) == files
    tensors = stored_tensors(sharded)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    assert sorted(index["weight_map"]) == sorted(tensors) == sorted(stored_tensors(out))
    assert torch.equal(_logits(load_model(sharded)), _logits(f["model"]))


def _bad(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_bad_input_is_exit_2_naming_the_file_and_field(folders, prepared, tmp_path, capsys):
    from safetensors.torch import save_file

    src = folders["qwen2"]["unit"]
    no_base = tmp_path / "no-base"
    shutil.copytree(src, no_base)
    cfg = json.loads((no_base / "config.json").read_text())
    del cfg["base_config"]
    (no_base / "config.json").write_text(json.dumps(cfg))
    err = _bad(capsys, ["eval", str(no_base), "--data", str(prepared), "--benchmarks", "swuggy", "--max-items", "2"])
    assert str(no_base / "config.json") in err and "'base_config'" in err
    err = _bad(capsys, ["export", str(no_base), "--format", "hf", "--out", str(tmp_path / "x")])
    assert str(no_base / "config.json") in err and "'base_config'" in err and not (tmp_path / "x").exists()

    plain = tmp_path / "no-prefix"
    shutil.copytree(src, plain)
    save_file({k.removeprefix("lm."): v for k, v in stored_tensors(src).items()}, str(plain / "model.safetensors"),
              metadata={"format": "pt"})
    for argv in (["generate", str(plain), "--prompts", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "g")],
                 ["export", str(plain), "--format", "hf", "--out", str(tmp_path / "y")]):
        (tmp_path / "p.jsonl").write_text(json.dumps({"id": "a", "units": [1, 2, 3]}) + "\n")
        err = _bad(capsys, argv)
        assert str(plain / "model.safetensors") in err and "'lm.'" in err and "model.embed_tokens.weight" in err
    assert not (tmp_path / "y").exists() and not (tmp_path / "g" / "generations.jsonl").exists()

    err = _bad(capsys, ["export", str(src), "--format", "gguf", "--out", str(tmp_path / "z")])
    assert "'--format'" in err and "gguf" in err and not (tmp_path / "z").exists()
    (tmp_path / "file").write_text("")
    err = _bad(capsys, ["export", str(src), "--format", "hf", "--out", str(tmp_path / "file")])
    assert "'--out'" in err
