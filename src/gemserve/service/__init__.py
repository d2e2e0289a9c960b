"""Orchestration: requests in protocol terms become engine requests and interaction events."""
