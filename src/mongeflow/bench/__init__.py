"""Benchmarks, each a list of rows over one harness (:mod:`mongeflow.bench.harness`): the
paper's table (:func:`run_paper`), known-map problems, two sample sets and the W2 pairs."""

from mongeflow.bench.paper import PAPER, faithful_rows, run_paper

__all__ = ["PAPER", "faithful_rows", "run_paper"]
