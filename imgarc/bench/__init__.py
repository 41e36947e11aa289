"""Benchmarks: metrics, baselines, reports."""
