"""HuBERT features from waveforms (transformers ``HubertModel``), batched without letting batching
change any utterance's features.

- Audio is read with soundfile, averaged to mono and resampled to 16 kHz (scipy ``resample_poly``).
- Layer ``L`` is ``hidden_states[L]`` of ``HubertModel(output_hidden_states=True)`` (default 11).
- Layer-norm feature encoders (``feat_extract_norm == "layer"``) are batched with zero padding and an
  attention mask: every convolution output frame inside an utterance sees only its own samples, padded
  frames are zeroed before the positional convolution, and attention masks padded keys, so the padded
  result equals the unpadded one up to float rounding. Group-norm feature encoders normalise over the
  whole (padded) time axis, which padding changes: those utterances are processed one at a time.
- An utterance's frame count is ``model._get_feat_extract_output_lengths(samples)``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from scaling.errors import ConfigError

SAMPLE_RATE = 16000


def load_audio(path: str | Path, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 waveform at ``target_sr``."""
    import soundfile as sf
    from scipy.signal import resample_poly

    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise ConfigError(f"cannot read audio ({type(e).__name__}: {str(e)[:200]})", source=str(path)) from None
    wav = wav.mean(axis=1)
    if wav.size == 0:
        raise ConfigError("the audio file is empty", source=str(path))
    if sr != target_sr:
        g = math.gcd(int(sr), target_sr)
        wav = resample_poly(wav, target_sr // g, int(sr) // g).astype(np.float32)
    return np.ascontiguousarray(wav, dtype=np.float32)


class HubertExtractor:
    """Layer-``layer`` features of a saved HubertModel (``save_pretrained`` folder or hub id in the cache)."""

    def __init__(self, model_dir: str | Path, layer: int = 11, device: str = "cpu", dtype: str = "float32",
                 normalize: bool = False):
        import torch
        from transformers import HubertModel

        try:
            model = HubertModel.from_pretrained(str(model_dir))
        except Exception as e:
            raise ConfigError(f"cannot load a HubertModel ({type(e).__name__}: {str(e)[:200]})", source=str(model_dir)) from None
        cfg = model.config
        if not 0 <= layer <= cfg.num_hidden_layers:
            raise ConfigError(f"layer must be in 0..{cfg.num_hidden_layers}", source=str(model_dir), field="layer", value=layer)
        if layer < cfg.num_hidden_layers and not getattr(cfg, "do_stable_layer_norm", False):
            model.encoder.layers = model.encoder.layers[:layer]  # later layers do not affect hidden_states[layer]
        self.torch = torch
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
        self.model = model.to(device=device, dtype=self.dtype).eval()
        self.device = device
        self.layer = layer
        self.normalize = normalize
        self.group_norm = getattr(cfg, "feat_extract_norm", "group") == "group"
        self.hidden_size = cfg.hidden_size
        self.frame_rate = SAMPLE_RATE / float(np.prod(cfg.conv_stride))
        self.source = str(model_dir)

    def n_frames(self, n_samples: int) -> int:
        out = self.model._get_feat_extract_output_lengths(self.torch.tensor([int(n_samples)]))
        return int(out[0])

    def _prep(self, wav: np.ndarray) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32)
        if self.normalize:
            wav = (wav - wav.mean()) / np.sqrt(wav.var() + 1e-7)
        return wav

    def features(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        """One [frames, hidden] float array per waveform; batched unless the encoder uses group norm."""
        if self.group_norm and len(wavs) > 1:
            return [f for w in wavs for f in self.features([w])]
        torch = self.torch
        wavs = [self._prep(w) for w in wavs]
        lengths = [len(w) for w in wavs]
        if min(lengths) < 400:
            raise ConfigError("audio shorter than one HuBERT frame (25 ms)", field="audio", value=min(lengths))
        T = max(lengths)
        x = np.zeros((len(wavs), T), dtype=np.float32)
        mask = np.zeros((len(wavs), T), dtype=np.int64)
        for i, w in enumerate(wavs):
            x[i, : len(w)] = w
            mask[i, : len(w)] = 1
        inp = torch.from_numpy(x).to(device=self.device, dtype=self.dtype)
        kwargs = {}
        if not self.group_norm:
            kwargs["attention_mask"] = torch.from_numpy(mask).to(self.device)
        with torch.inference_mode():
            out = self.model(inp, output_hidden_states=True, **kwargs)
        hs = out.hidden_states[self.layer].float().cpu().numpy()
        return [hs[i, : self.n_frames(n)] for i, n in enumerate(lengths)]
