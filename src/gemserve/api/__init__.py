"""HTTP only: routes per API surface, body parsing, SSE framing, the error envelope, auth."""
