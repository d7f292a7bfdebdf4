"""Likelihood evaluation: ``scoring`` (pair scores), ``formats`` (published layouts), ``benchmarks``
(finding and loading a benchmark by name), ``suite`` (many metrics, one pass), ``results`` (per-item
outputs, bootstrap intervals), ``cli`` (``scaling eval``)."""
