"""Helpers shared by the test suite: plain modules, no fixtures (those live in conftest.py
files). Test modules import from here, never from one another or from a conftest."""
