"""`scaling generate` and GenPPL end to end on tiny random models built here (no downloads):
a toy Qwen2 speech LM, a tiny unit HiFi-GAN in the speech-resynthesis format, a tiny Whisper, a tiny text LM."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from scaling.cli import main


@pytest.fixture(scope="module")
def models(prepared, tmp_path_factory):
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    from scaling.datadir import DataDir
    from scaling.shapes import DEMO
    from trainer.data.tokenizer import load_tokenizer
    from trainer.generate.vocoder import _build
    from trainer.model import build_model

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("gen")
    dd = DataDir.open(prepared, verify="none")
    lm = root / "slm"
    build_model(DEMO["toy-xs"].with_vocab(dd.speech_model_vocab), 0).save_pretrained(str(lm))
    load_tokenizer(prepared / "tokenizer").save_pretrained(str(lm))

    text = root / "textlm"
    build_model(DEMO["toy-xs"].with_vocab(dd.text_model_vocab), 1).save_pretrained(str(text))
    ttok = load_tokenizer(prepared / "tokenizer_text")
    ttok.save_pretrained(str(text))

    # tiny unit HiFi-GAN, saved as speech-resynthesis does: weight-normed convs (weight_g / weight_v)
    voc = root / "vocoder"
    voc.mkdir()
    cfg = {"upsample_rates": [4, 4], "upsample_kernel_sizes": [8, 8], "upsample_initial_channel": 16,
           "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]], "num_embeddings": 500,
           "embedding_dim": 8, "model_in_dim": 8, "sampling_rate": 16000}
    (voc / "config.json").write_text(json.dumps(cfg))
    torch.manual_seed(2)
    gen = _build(cfg)
    state = {}
    for k, v in gen.state_dict().items():
        if k.endswith(".weight") and v.dim() == 3:  # conv: store as g * v / |v| with |v| != g
            vv = v * 3.0
            state[k + "_v"] = vv
            state[k + "_g"] = v.flatten(1).norm(dim=1).view(-1, 1, 1)
        else:
            state[k] = v
    torch.save({"generator": state}, voc / "g_00000001")

    # tiny Whisper with the text tokenizer; eos gets a zero output row so greedy decoding goes on
    asr = root / "whisper"
    eos = ttok.eos_token_id
    wcfg = WhisperConfig(vocab_size=len(ttok), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                         decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
                         max_source_positions=1500, max_target_positions=64, decoder_start_token_id=eos,
                         eos_token_id=eos, pad_token_id=eos, bos_token_id=eos)
    torch.manual_seed(3)
    w = WhisperForConditionalGeneration(wcfg)
    with torch.no_grad():
        w.proj_out.weight[eos] = 0.0
    w.save_pretrained(str(asr))
    WhisperFeatureExtractor(feature_size=80).save_pretrained(str(asr))
    ttok.save_pretrained(str(asr))
    return {"lm": lm, "text": text, "vocoder": voc, "asr": asr, "gen": gen, "root": root}


def prompts_file(path, n=3):
    rows = [{"id": f"u{i}", "units": list(range(10 * i, 10 * i + 100)), "duration": [1] * 100} for i in range(n)]
    rows.append({"id": "mixed", "segments": [{"modality": "text", "text": "the cat"},
                                             {"modality": "speech", "units": [5, 6, 7]}], "output": "text"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_vocoder_folds_weight_norm_and_matches_the_generator(models):
    from trainer.generate.vocoder import UnitHifiGan

    v = UnitHifiGan(models["vocoder"])
    units = [3, 1, 4, 1, 5]
    with torch.no_grad():
        want = models["gen"](torch.tensor([units])).view(-1).numpy()
    got = v(units)
    assert got.shape == (len(units) * 16,) and np.allclose(got, want, atol=1e-5)


def test_scaling_generate_writes_continuations_and_audio(models, tmp_path):
    import soundfile as sf

    p = prompts_file(tmp_path / "prompts.jsonl")
    out = tmp_path / "out"
    args = ["generate", str(models["lm"]), "--prompts", str(p), "--out", str(out), "--vocoder", str(models["vocoder"]),
            "--max-new-tokens", "12", "--prompt-seconds", "2", "--seed", "5"]
    assert main(args) == 0
    rows = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["u0", "u1", "u2", "mixed"]
    for r in rows[:3]:
        prompt = r["units"][:50]  # 2 s of 40 ms frames
        assert prompt == list(range(int(r["id"][1:]) * 10, int(r["id"][1:]) * 10 + 50))
        assert len(r["units"]) == 50 + len(r["tokens"]) and 0 < len(r["tokens"]) <= 12
        assert all(0 <= u < 500 for u in r["units"])
        wav, sr = sf.read(str(out / r["audio"]))
        assert sr == 16000 and wav.shape == (16 * len(r["units"]),)
    assert "text" in rows[3] and "units" not in rows[3]
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    vocab = SpeechVocab.of(load_tokenizer(models["lm"]))
    assert all(t < vocab.unit_offset and t not in (vocab.speech, vocab.text) for t in rows[3]["tokens"])
    again = tmp_path / "again"
    assert main(args[:5] + [str(again)] + args[6:]) == 0  # same seed -> same samples
    assert (again / "generations.jsonl").read_text() == (out / "generations.jsonl").read_text()


def test_genppl_end_to_end_equals_its_definition(models, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = tmp_path / "prompts.jsonl"
    p.write_text("".join(json.dumps({"id": f"u{i}", "units": list(range(i, i + 60))}) + "\n" for i in range(3)))
    res_json, detail = tmp_path / "r.json", tmp_path / "detail"
    assert main(["eval", str(models["lm"]), "--benchmarks", "genppl", "--prompts", str(p), "--vocoder",
                 str(models["vocoder"]), "--asr", str(models["asr"]), "--text-lm", str(models["text"]),
                 "--max-new-tokens", "8", "--genppl-out", str(detail), "--json", str(res_json)]) == 0
    g = json.loads(res_json.read_text())["metrics"]["genppl"]
    assert g["temperature"] == 0.8 and g["top_k"] == 25 and g["max_new_tokens"] == 8 and g["prompt_seconds"] == 3.0
    rows = [json.loads(x) for x in (detail / "genppl.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["transcript"] for r in rows)
    # the definition, computed here: exp(mean over transcripts of the mean token NLL under the text LM)
    tok = AutoTokenizer.from_pretrained(str(models["text"]))
    lm = AutoModelForCausalLM.from_pretrained(str(models["text"])).eval()
    nlls = []
    for r in rows:
        ids = tok(r["transcript"], add_special_tokens=True)["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(lm(torch.tensor([ids])).logits[0, :-1].double(), -1)
        nlls.append(-lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].mean().item())
    assert g["items"] == 3 and g["empty"] == 0
    assert g["genppl"] == pytest.approx(math.exp(np.mean(nlls)), rel=1e-5)


def test_genppl_without_its_models_is_a_clear_error(models, tmp_path, capsys):
    assert main(["eval", str(models["lm"]), "--benchmarks", "genppl", "--prompts", str(tmp_path / "p.jsonl")]) == 2
    assert "genppl needs --vocoder, --asr, --text-lm" in capsys.readouterr().err


def test_sampling_with_the_kv_cache_equals_recomputing_the_prefix(models):
    """The cached loop draws what a plain loop over the whole prefix draws (same logits, same rng)."""
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.generate.sampling import allowed_ids, sample
    from trainer.model import load_model

    model = load_model(models["lm"]).eval()
    vocab = SpeechVocab.of(load_tokenizer(models["lm"]))
    allowed = allowed_ids(vocab, "speech")
    prompt = [vocab.speech] + vocab.units_to_ids([4, 8, 15, 16, 23])

    def plain(seed, temperature, top_k, n):
        g = torch.Generator().manual_seed(seed)
        mask = torch.full((model.get_input_embeddings().weight.shape[0],), float("-inf"))
        mask[torch.tensor(allowed)] = 0.0
        ids, out = list(prompt), []
        for _ in range(n):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float() / temperature + mask
            top, idx = torch.topk(logits, top_k)
            nxt = int(idx[torch.multinomial(torch.softmax(top, -1), 1, generator=g)])
            if nxt == vocab.eos:
                break
            out.append(nxt)
            ids.append(nxt)
        return out

    for seed, t, k in ((0, 0.8, 25), (1, 1.3, 5), (2, 0.5, 1)):
        got = sample(model, prompt, allowed, temperature=t, top_k=k, max_new_tokens=10, seed=seed, eos=vocab.eos)
        assert got == plain(seed, t, k, 10)
        assert all(x in set(allowed) for x in got)
    greedy = sample(model, prompt, allowed, temperature=1.0, top_k=1, max_new_tokens=6, seed=9, eos=vocab.eos)
    with torch.no_grad():
        first = model(input_ids=torch.tensor([prompt])).logits[0, -1]
    assert greedy[0] == allowed[int(first[torch.tensor(allowed)].argmax())]


@pytest.mark.parametrize("flag,value,field", [("--temperature", "0", "temperature"), ("--top-k", "0", "top_k"),
                                              ("--max-new-tokens", "-1", "max_new_tokens")])
def test_bad_sampling_settings_fail_before_loading(models, tmp_path, capsys, monkeypatch, flag, value, field):
    import trainer.model as m

    monkeypatch.setattr(m, "load_model", lambda *a: (_ for _ in ()).throw(AssertionError("model loaded")))
    p = prompts_file(tmp_path / "p.jsonl")
    assert main(["generate", str(models["lm"]), "--prompts", str(p), "--out", str(tmp_path / "o"), flag, value]) == 2
    assert f"field '{field}'" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_bad_prompts_name_file_line_and_field(tmp_path):
    from scaling.errors import ConfigError
    from trainer.generate.sampling import load_prompts

    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"id": "a", "segments": [{"modality": "speech", "units": []}]}) + "\n")
    with pytest.raises(ConfigError, match=r"p.jsonl: field 'segments\[0\].units': line 1 \(a\): speech segment without units"):
        load_prompts(p)
    p.write_text(json.dumps({"id": "a", "units": [1, 2], "output": "video"}) + "\n")
    with pytest.raises(ConfigError, match=r"field 'output': line 1 \(a\): must be 'speech' or 'text'"):
        load_prompts(p)
