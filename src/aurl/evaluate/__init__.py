"""Evaluation: likelihood, per-piece features, set comparison, reports."""
