"""Helpers shared by test modules (scripts that tests launch, reference computations)."""
