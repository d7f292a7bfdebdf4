"""Speech units from audio: HuBERT features -> k-means units -> deduplicated units with durations.

    hubert.HubertExtractor   waveforms -> layer-L features, batched, padding-invariant
    kmeans.KMeansQuantizer   features -> unit ids, centroids from .npy / .safetensors / .pt (weights only)
    dedup.dedup              unit ids -> (units, run lengths in frames)
    extract.extract_units    a file list -> SlamKit-style features.jsonl, resumable
"""
from trainer.units.dedup import dedup, expand
from trainer.units.kmeans import KMeansQuantizer, load_centroids

__all__ = ["dedup", "expand", "KMeansQuantizer", "load_centroids"]
