"""Units -> waveform.

The interface: a ``Vocoder`` has ``sample_rate`` and ``__call__(units: list[int]) -> np.ndarray`` (mono
float32). ``UnitHifiGan`` loads a unit HiFi-GAN in the speech-resynthesis / textlesslib format from a
local folder: ``config.json`` (upsample_rates, upsample_kernel_sizes, upsample_initial_channel,
resblock_kernel_sizes, resblock_dilation_sizes, num_embeddings, embedding_dim, sampling_rate, optional
dur_predictor_params) and a generator checkpoint (``g_*`` / ``*.pt``: ``{"generator": state_dict}``,
weight-normed convolutions as ``weight_g``/``weight_v``), read with ``torch.load(weights_only=True)``.
Weight norm is folded into plain weights at load. Speaker and f0 conditioning are refused.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from scaling.errors import ConfigError

LRELU = 0.1


class Vocoder(Protocol):
    sample_rate: int

    def __call__(self, units: list[int]):  # -> np.ndarray, float32, mono
        ...


def _fold_weight_norm(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        if k.endswith(".weight_g"):
            base = k[: -len("_g")]
            vv = state[base + "_v"]
            norm = vv.flatten(1).norm(dim=1).view(-1, *([1] * (vv.dim() - 1)))
            out[base] = v * vv / norm
        elif k.endswith(".weight_v"):
            continue
        else:
            out[k] = v
    return out


def _build(cfg: dict):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def pad(k, d=1):
        return (k * d - d) // 2

    class ResBlock(nn.Module):
        def __init__(self, ch, k, dil):
            super().__init__()
            self.convs1 = nn.ModuleList([nn.Conv1d(ch, ch, k, 1, dilation=d, padding=pad(k, d)) for d in dil])
            self.convs2 = nn.ModuleList([nn.Conv1d(ch, ch, k, 1, dilation=1, padding=pad(k)) for _ in dil])

        def forward(self, x):
            for c1, c2 in zip(self.convs1, self.convs2):
                x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU)), LRELU))
            return x

    class DurationPredictor(nn.Module):
        def __init__(self, p):
            super().__init__()
            h, k = p["var_pred_hidden_dim"], p["var_pred_kernel_size"]
            self.conv1 = nn.Sequential(nn.Conv1d(p["encoder_embed_dim"], h, k, padding=(k - 1) // 2), nn.ReLU())
            self.ln1 = nn.LayerNorm(h)
            self.conv2 = nn.Sequential(nn.Conv1d(h, h, k, padding=1), nn.ReLU())
            self.ln2 = nn.LayerNorm(h)
            self.proj = nn.Linear(h, 1)

        def forward(self, x):  # B x T x C -> B x T (log durations)
            x = self.ln1(self.conv1(x.transpose(1, 2)).transpose(1, 2))
            x = self.ln2(self.conv2(x.transpose(1, 2)).transpose(1, 2))
            return self.proj(x).squeeze(-1)

    class CodeGenerator(nn.Module):
        def __init__(self):
            super().__init__()
            c0 = cfg["upsample_initial_channel"]
            self.dict = nn.Embedding(cfg["num_embeddings"], cfg["embedding_dim"])
            self.conv_pre = nn.Conv1d(cfg.get("model_in_dim", cfg["embedding_dim"]), c0, 7, 1, padding=3)
            self.ups = nn.ModuleList([nn.ConvTranspose1d(c0 // 2 ** i, c0 // 2 ** (i + 1), k, u, padding=(k - u) // 2)
                                      for i, (u, k) in enumerate(zip(cfg["upsample_rates"], cfg["upsample_kernel_sizes"]))])
            self.nk = len(cfg["resblock_kernel_sizes"])
            self.resblocks = nn.ModuleList([ResBlock(c0 // 2 ** (i + 1), k, d) for i in range(len(self.ups))
                                            for k, d in zip(cfg["resblock_kernel_sizes"], cfg["resblock_dilation_sizes"])])
            self.conv_post = nn.Conv1d(c0 // 2 ** len(self.ups), 1, 7, 1, padding=3)
            p = cfg.get("dur_predictor_params")
            self.dur_predictor = DurationPredictor(p) if p else None

        def forward(self, code):
            x = self.dict(code).transpose(1, 2)
            if self.dur_predictor is not None:  # deduplicated units: predict each unit's frames
                dur = torch.clamp(torch.round(torch.exp(self.dur_predictor(x.transpose(1, 2))) - 1).long(), min=1)
                x = torch.repeat_interleave(x, dur.view(-1), dim=2)
            x = self.conv_pre(x)
            for i, up in enumerate(self.ups):
                x = up(F.leaky_relu(x, LRELU))
                x = sum(self.resblocks[i * self.nk + j](x) for j in range(self.nk)) / self.nk
            return torch.tanh(self.conv_post(F.leaky_relu(x)))

    return CodeGenerator()


class UnitHifiGan:
    """A unit HiFi-GAN from a local folder (see the module docstring)."""

    def __init__(self, folder: str | Path, device: str = "cpu"):
        import torch

        folder = Path(folder)
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise ConfigError("vocoder folder needs config.json (speech-resynthesis format)", source=str(folder))
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        for k in ("upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel", "resblock_kernel_sizes",
                  "resblock_dilation_sizes", "num_embeddings", "embedding_dim"):
            if k not in cfg:
                raise ConfigError("missing field", source=str(cfg_path), field=k)
        for k in ("multispkr", "f0", "multistyle", "embedder_params"):
            if cfg.get(k):
                raise ConfigError("speaker / f0 / style conditioning is not supported", source=str(cfg_path), field=k)
        ckpts = sorted(folder.glob("g_*")) + sorted(folder.glob("*.pt"))
        if not ckpts:
            raise ConfigError("no generator checkpoint (g_* or *.pt)", source=str(folder))
        obj = torch.load(ckpts[-1], map_location="cpu", weights_only=True)
        state = _fold_weight_norm(obj.get("generator", obj))
        self.model = _build(cfg)
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ConfigError(f"checkpoint does not match config.json (missing {missing[:3]}, unexpected {unexpected[:3]})",
                              source=str(ckpts[-1]))
        self.model.eval().to(device)
        self.device = device
        self.sample_rate = int(cfg.get("sampling_rate", 16000))
        self.n_units = int(cfg["num_embeddings"])

    def __call__(self, units: list[int]):
        import torch

        if not units:
            import numpy as np

            return np.zeros(0, dtype=np.float32)
        bad = [u for u in units if not 0 <= u < self.n_units]
        if bad:
            raise ConfigError(f"unit {bad[0]} is outside the vocoder's 0..{self.n_units - 1}", field="units", value=bad[0])
        with torch.no_grad():
            wav = self.model(torch.tensor([units], device=self.device))
        return wav.view(-1).float().cpu().numpy()
