"""The in-process llama.cpp engine: one native thread runs every model, each batching requests."""

from gemserve.engine.llama.engine import LlamaEngine

__all__ = ["LlamaEngine"]
