"""Ray Tune search over TTUR learning-rate pairs."""

from vitforge.tune.search import SearchResult, run_search

__all__ = ["SearchResult", "run_search"]
