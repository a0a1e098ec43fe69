"""Benchmarks: each writes JSON under bench/results/."""
