"""The OpenAI-compatible surface Gemini serves at ``/v1beta/openai/``: chat completion
requests (``request``), responses, stream chunks and error bodies (``response``)."""
