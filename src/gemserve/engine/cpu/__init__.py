"""What this CPU really runs, and the llama.cpp build that follows from it.

Standard library only: ``scripts/setup`` runs it with ``PYTHONPATH=src`` before any dependency
is installed (``python -m gemserve.engine.cpu.build``).
"""
