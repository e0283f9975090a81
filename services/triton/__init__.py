"""Triton Inference Server: the model repository, model cards, and the async client adapter."""
