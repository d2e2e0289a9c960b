"""The classic Gemini surface on the wire: ``models/{model}:generateContent`` and its family
(requests in ``request``, response bodies and stream chunks in ``response``)."""
