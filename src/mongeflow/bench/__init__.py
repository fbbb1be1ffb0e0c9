"""Benchmarks: the paper's table (:func:`run_paper`) and known-map problems."""

from mongeflow.bench.paper import PAPER, faithful_rows, run_paper

__all__ = ["PAPER", "faithful_rows", "run_paper"]
