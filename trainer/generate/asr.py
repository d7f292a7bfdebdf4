"""Speech -> text.

The interface: an ``ASR`` has ``transcribe(wav: np.ndarray, sample_rate: int) -> str``. ``WhisperASR``
loads a Whisper model folder (config.json, weights, the processor's tokenizer and feature extractor)
through transformers, from local files only, and decodes greedily: the decoder starts from the model's
start token and the English / transcribe / no-timestamps tokens when its tokenizer has them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from scaling.errors import ConfigError

WHISPER_RATE = 16000


class ASR(Protocol):
    def transcribe(self, wav, sample_rate: int) -> str:
        ...


def resample(wav, sr: int, target: int):
    import numpy as np

    if sr == target:
        return np.asarray(wav, dtype=np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(sr, target)
    return resample_poly(np.asarray(wav, dtype=np.float64), target // g, sr // g).astype(np.float32)


class WhisperASR:
    def __init__(self, folder: str | Path, device: str = "cpu", max_new_tokens: int = 128):
        from transformers import AutoFeatureExtractor, AutoModelForSpeechSeq2Seq, AutoTokenizer

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise ConfigError("not a Whisper model folder (no config.json)", source=str(folder))
        self.model = AutoModelForSpeechSeq2Seq.from_pretrained(str(folder), local_files_only=True).eval().to(device)
        self.features = AutoFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        vocab = self.tokenizer.get_vocab()
        start = self.model.config.decoder_start_token_id
        self.prefix = [start] + [vocab[t] for t in ("<|en|>", "<|transcribe|>", "<|notimestamps|>") if t in vocab]
        self.eos = self.model.config.eos_token_id
        # the decoder's positions bound the transcript (448 for the released Whisper models)
        limit = getattr(self.model.config, "max_target_positions", None) or 448
        self.device, self.max_new_tokens = device, max(0, min(max_new_tokens, limit - len(self.prefix)))

    def transcribe(self, wav, sample_rate: int) -> str:
        import torch

        wav = resample(wav, sample_rate, WHISPER_RATE)
        if wav.size == 0:
            return ""
        feats = self.features(wav, sampling_rate=WHISPER_RATE, return_tensors="pt").input_features.to(self.device)
        ids = list(self.prefix)
        with torch.no_grad():
            enc = self.model.get_encoder()(feats)
            for _ in range(self.max_new_tokens):
                logits = self.model(encoder_outputs=enc, decoder_input_ids=torch.tensor([ids], device=self.device)).logits
                nxt = int(logits[0, -1].argmax())
                if nxt == self.eos:
                    break
                ids.append(nxt)
        return self.tokenizer.decode(ids[len(self.prefix):], skip_special_tokens=True).strip()
