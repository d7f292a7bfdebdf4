"""Document masking for every attention implementation usable on the CPU: the loss of a packed
batch equals the per-document losses computed one document at a time (tests/helpers/scale_refs)."""
import pytest
import torch

from helpers.scale_refs import per_document_loss
from scaling.shapes import DEMO
from trainer.attention import packed_inputs
from trainer.kernels.chunked_ce import lm_loss
from trainer.model import build_model

EOS = 5
# flex_attention is left out: it crashes (segfault) on CPU in this torch build. FlashAttention needs
# a GPU; its input layout (one flattened row, restarting positions) is checked below on SDPA and
# eager, which read the same layout through transformers' packed-sequence detection.
IMPLEMENTATIONS = ["sdpa", "eager"]


def _packed_batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(EOS + 1, 200, (3, 40), generator=g)
    ids[:, [7, 19, 30]] = EOS
    ids[1, 3] = EOS  # a one-token-long document too
    return ids


@pytest.mark.parametrize("layout", ["native", "flash_attention_2"])
@pytest.mark.parametrize("attn", IMPLEMENTATIONS)
def test_packed_loss_equals_per_document_losses(attn, layout):
    chunked = layout == "native"  # both LM-head paths, each on both implementations
    ids = _packed_batch()
    model = build_model(DEMO["toy-xs"].with_vocab(256), 0, attn=attn).eval()
    valid = torch.ones(ids.shape[0], ids.shape[1] - 1, dtype=torch.bool)
    flat_ids, flat_valid, extra = packed_inputs(ids, valid, EOS, attn=attn if layout == "native" else layout)
    if layout != "native":
        assert flat_ids.shape == (1, ids.numel()) and int(flat_valid.sum()) == valid.numel()  # row seams left out
    with torch.no_grad():
        loss = (lm_loss(model, flat_ids, flat_valid, extra, chunked=chunked) / flat_valid.sum()).item()
    assert loss == pytest.approx(per_document_loss(model, ids.numpy(), EOS), rel=1e-5)
    # and the masks matter: plain causal attention over the packed rows gives another loss
    with torch.no_grad():
        leaky = (lm_loss(model, ids, valid, {}, chunked=chunked) / valid.sum()).item()
    assert leaky != pytest.approx(loss, rel=1e-4)


def test_no_kv_cache_in_any_built_model():
    model = build_model(DEMO["toy-xs"].with_vocab(256), 0)
    assert model.config.use_cache is False
    out = model(input_ids=torch.tensor([[1, 2, 3]]))
    assert getattr(out, "past_key_values", None) is None
