"""Measures of generated samples, run on the exported (EMA) generator."""
