"""Reference computations for the scale-path tests, independent of the code under test's loss path."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def per_document_loss(model, windows: np.ndarray, eos: int) -> float:
    """Mean next-token NLL of packed windows computed one document at a time: each document (up
    to and including its eos) is run alone from position 0, and predicts the window's next tokens
    (its last prediction is the following document's first token, as in the packed window)."""
    total, count = 0.0, 0
    for w in windows:
        w = torch.as_tensor(w, dtype=torch.long)
        cuts = [0] + [i + 1 for i in range(len(w) - 1) if w[i] == eos] + [len(w)]
        for a, b in zip(cuts[:-1], cuts[1:]):
            doc = w[a:b]
            logits = model(input_ids=doc[None]).logits[0].double()
            n_pred = min(b, len(w) - 1) - a  # the window's last token predicts nothing
            if n_pred <= 0:
                continue
            total += F.cross_entropy(logits[:n_pred], w[a + 1:a + 1 + n_pred], reduction="sum").item()
            count += n_pred
    return total / count


def tiny_text_lm(folder, text_vocab: int, tokenizer_dir=None, *, seed: int = 1, tie: bool = True, dtype=None):
    """A tiny Qwen2 text LM saved with save_pretrained (safetensors) in ``folder`` (``tie``: tied
    embeddings as Qwen2.5-0.5B; untied as the 7B; ``dtype`` torch.bfloat16: weights and config's
    ``dtype`` in bf16, as every published Qwen2.5 checkpoint is saved)."""
    import dataclasses

    from scaling.shapes import DEMO
    from trainer.model import build_model

    shape = dataclasses.replace(DEMO["toy-xs"], vocab_size=text_vocab, tie_embeddings=tie)
    lm = build_model(shape, seed=seed)
    if dtype is not None:
        lm.to(dtype)
    lm.save_pretrained(folder)
    if tokenizer_dir is not None:
        from trainer.data.tokenizer import load_tokenizer

        load_tokenizer(tokenizer_dir).save_pretrained(folder)
    return shape
