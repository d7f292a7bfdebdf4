"""Helpers shared by test modules: run specs (runs), the official ZeroSpeech scoring steps (zerospeech_official)."""
