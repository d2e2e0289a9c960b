"""gemserve: the Gemini Interactions API, self-hosted on open models."""

__version__ = "0.1.0"
