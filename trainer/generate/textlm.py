"""Perplexity of texts under a causal text LM (a local folder: config.json, weights, tokenizer).

As SlamKit's ``get_llm_preplexity``: each text is tokenised with the tokenizer's special tokens (a
Llama BOS), and its NLL is the mean over its predicted tokens. A text with no predicted token (an
empty transcript) has no NLL: the caller counts it and leaves it out.
"""
from __future__ import annotations

from pathlib import Path

from scaling.errors import ConfigError


class TextLM:
    def __init__(self, folder: str | Path, device: str = "cpu"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise ConfigError("not a causal LM folder (no config.json)", source=str(folder))
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True,
                                                          dtype=torch.float32).eval().to(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.device = device

    def nll(self, text: str) -> float | None:
        """Mean NLL (nats per token) of ``text``; None when nothing is predicted."""
        import torch
        import torch.nn.functional as F

        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        if len(ids) < 2:
            return None
        x = torch.tensor([ids], device=self.device)
        with torch.no_grad():
            logits = self.model(input_ids=x).logits[0, :-1].float()
        return float(F.cross_entropy(logits, x[0, 1:]).item())
