"""The Engine interface over OpenAI-compatible upstreams (vLLM, SGLang, llama-server, Ollama).

``client.py`` speaks to one upstream, ``pool.py`` routes over several, ``translate.py``
writes a request as an OpenAI body, ``stream.py`` reads the SSE answer as engine events, and
``engine.py`` (``RemoteEngine``) puts them together.
"""

from gemserve.engine.remote.engine import RemoteEngine, UpstreamConfig

__all__ = ["RemoteEngine", "UpstreamConfig"]
