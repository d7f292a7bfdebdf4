"""Parameter and FLOP accounting against built models and published sizes."""
import pytest
import torch

from scaling.flops import count_params, flops_exact, flops_per_token_exact, matmul_params
from scaling.shapes import DEMO, PUBLISHED, SPEECH_TOKENS, ModelShape, padded_vocab
from scaling.errors import ConfigError
from trainer.model import hf_config


def _built_numel(shape):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # no memory, exact shapes
        model = AutoModelForCausalLM.from_config(hf_config(shape))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(PUBLISHED) + list(DEMO))
def test_count_matches_built_model(name):
    shape = PUBLISHED.get(name) or DEMO[name]
    assert count_params(shape).total == _built_numel(shape)


@pytest.mark.parametrize("name", ["qwen2.5-0.5b", "qwen2.5-7b"])
def test_count_matches_with_speech_rows(name):
    shape = PUBLISHED[name]
    extended = shape.with_vocab(padded_vocab(shape.vocab_size + SPEECH_TOKENS))
    assert count_params(extended).total == _built_numel(extended)


@pytest.mark.parametrize("name,published", [("qwen2.5-0.5b", 0.49e9), ("qwen2.5-1.5b", 1.54e9),
                                            ("qwen2.5-3b", 3.09e9), ("qwen2.5-7b", 7.62e9)])
def test_published_sizes(name, published):
    assert count_params(PUBLISHED[name]).total == pytest.approx(published, rel=0.01)


def test_non_embedding_excludes_embeddings_and_untied_head():
    s = PUBLISHED["qwen2.5-7b"]  # untied
    pc = count_params(s)
    assert pc.embedding == 2 * s.vocab_size * s.hidden_size
    assert pc.total == pc.embedding + pc.non_embedding


def test_exact_flops_formula():
    s = DEMO["toy-s"]
    # 6 x (matmul params incl. LM head) + 6 x layers x seq x hidden, per token (REFERENCE section 4)
    per_tok = 6 * (count_params(s).non_embedding + s.vocab_size * s.hidden_size) + 6 * s.num_layers * 128 * s.hidden_size
    assert flops_per_token_exact(s, 128) == per_tok
    assert flops_exact(s, 1000, 128) == 1000 * per_tok
    assert matmul_params(s) == count_params(s).non_embedding + s.vocab_size * s.hidden_size


def test_bad_shape_rejected():
    with pytest.raises(ConfigError, match="num_kv_heads"):
        ModelShape(64, 2, 4, 3, 128, 100)
    with pytest.raises(ConfigError, match="hidden_size"):
        ModelShape(-1, 2, 4, 2, 128, 100)
