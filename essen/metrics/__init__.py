"""Metrics: the in-memory collector, mergeable histograms, unique counts, system stats."""
