"""Structured and unstructured pruning of torch models (heads, FFN neurons, layers, magnitude, 2:4)."""
