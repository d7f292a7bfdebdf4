"""K-means quantisation of speech features with centroids loaded from a file.

Accepted centroid files (an array [K, D]; K units, at most ``scaling.datadir.MAX_UNITS``; prepare the
features with ``scaling data prepare --units K``, default 500):
    .npy            ``np.load(allow_pickle=False)``
    .safetensors    one tensor, or a tensor named ``centroids`` / ``cluster_centers`` / ``cluster_centers_``
    .pt / .pth      ``torch.load(weights_only=True)``: a tensor, or a dict holding one of those names
                    (or a single tensor)
The textless/SlamKit k-means checkpoints are pickled scikit-learn ``KMeans`` objects (joblib); they are
never unpickled here (unpickling runs arbitrary code). Convert one once, where you trust it, with
``np.save("km.npy", joblib.load("km.bin").cluster_centers_)``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from scaling.datadir import MAX_UNITS
from scaling.errors import ConfigError

#: The most centroids a file may hold: the largest inventory a data folder may declare (the
#: tokenizer then gets one <UnK> token per centroid).
N_UNITS_MAX = MAX_UNITS
_NAMES = ("centroids", "cluster_centers", "cluster_centers_", "C")
_ACCEPTED = (".npy (array [K, D]), .safetensors (one tensor or one named 'centroids'/'cluster_centers_'), "
             ".pt/.pth readable by torch.load(weights_only=True) (a tensor or a dict of tensors); pickled "
             "scikit-learn/joblib k-means files are not read (unsafe): convert with "
             "np.save('km.npy', joblib.load(FILE).cluster_centers_)")


def _pick(tensors: dict, source: str) -> np.ndarray:
    for name in _NAMES:
        if name in tensors:
            return np.asarray(tensors[name])
    if len(tensors) == 1:
        return np.asarray(next(iter(tensors.values())))
    raise ConfigError(f"cannot tell which tensor holds the centroids among {sorted(tensors)}; name it 'centroids'",
                      source=source, field="centroids")


def load_centroids(path: str | Path) -> np.ndarray:
    """Centroids [K, D] as float32 from a .npy / .safetensors / .pt file (see module docstring)."""
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise ConfigError("k-means file not found", source=src)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".safetensors":
            from safetensors.numpy import load_file

            arr = _pick(load_file(str(path)), src)
        elif suffix in (".pt", ".pth"):
            import torch

            obj = torch.load(str(path), map_location="cpu", weights_only=True)
            if isinstance(obj, torch.Tensor):
                arr = obj.detach().float().numpy()
            elif isinstance(obj, dict):
                tensors = {k: (v.detach().float().numpy() if isinstance(v, torch.Tensor) else v)
                           for k, v in obj.items() if isinstance(v, (torch.Tensor, np.ndarray))}
                if not tensors:
                    raise ConfigError(f"the .pt file holds no tensor; accepted: {_ACCEPTED}", source=src)
                arr = _pick(tensors, src)
            else:
                raise ConfigError(f"the .pt file holds a {type(obj).__name__}, not centroids; accepted: {_ACCEPTED}", source=src)
        else:
            raise ConfigError(f"unsupported k-means file type {suffix!r}; accepted: {_ACCEPTED}", source=src, field="kmeans")
    except ConfigError:
        raise
    except Exception as e:  # pickles refused by np.load / weights_only, corrupt files
        raise ConfigError(f"cannot read centroids ({type(e).__name__}: {str(e)[:200]}); accepted: {_ACCEPTED}",
                          source=src) from None
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[0] < 1 or not np.issubdtype(arr.dtype, np.number):
        raise ConfigError("centroids must be a numeric array [K, D]", source=src, field="centroids", value=list(arr.shape))
    if arr.shape[0] > N_UNITS_MAX:
        raise ConfigError(f"{arr.shape[0]} centroids, but a speech vocabulary holds at most {N_UNITS_MAX} unit tokens",
                          source=src, field="centroids", value=arr.shape[0])
    if not np.all(np.isfinite(arr)):
        raise ConfigError("centroids contain NaN or inf", source=src, field="centroids")
    return arr.astype(np.float32)


class KMeansQuantizer:
    """Nearest-centroid assignment (squared Euclidean), computed in float64 per utterance so the
    result never depends on which other utterances were processed alongside."""

    def __init__(self, centroids, source: str = "centroids"):
        c = np.asarray(centroids, dtype=np.float64)
        if c.ndim != 2:
            raise ConfigError("centroids must be [K, D]", source=source, value=list(c.shape))
        self.centroids = c
        self.sq = (c * c).sum(1)
        self.source = source

    @classmethod
    def load(cls, path: str | Path) -> "KMeansQuantizer":
        return cls(load_centroids(path), source=str(path))

    @property
    def n_units(self) -> int:
        return self.centroids.shape[0]

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    def __call__(self, feats) -> np.ndarray:
        x = np.asarray(feats, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ConfigError(f"features of shape {list(x.shape)} do not match centroids of dimension {self.dim}",
                              source=self.source, field="centroids", value=self.dim)
        d = self.sq[None, :] - 2.0 * (x @ self.centroids.T)
        return d.argmin(1).astype(np.int64)
