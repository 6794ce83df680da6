"""Benchmarks: each runs alone as ``python -m bench.<name>``; ``python -m bench.run_all`` runs them all."""
