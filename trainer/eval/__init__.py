"""Likelihood evaluation: ``scoring`` (encodings, sequence NLLs, pair scores), ``formats`` (published
layouts: ZeroSpeech, StoryCloze incl. SlamKit's), ``benchmarks`` (finding and loading a benchmark by
name), ``suite`` (many metrics, one pass), ``results`` (per-item outputs, group bootstrap intervals),
``zerospeech`` (the official sLM21 aggregation and submission files), ``cli`` (``scaling eval``).
Generation and GenPPL live in ``trainer.generate``."""
