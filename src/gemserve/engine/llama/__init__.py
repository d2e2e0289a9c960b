"""The in-process llama.cpp engine: one thread owns all native state and batches every request."""

from gemserve.engine.llama.engine import LlamaEngine

__all__ = ["LlamaEngine"]
