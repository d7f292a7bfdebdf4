"""Helpers shared by test modules: run specs (runs), scripts that tests launch (dist_checks), reference computations (zerospeech_official), results tables (tables)."""
