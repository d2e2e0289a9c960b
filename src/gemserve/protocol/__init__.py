"""Wire models, one module per API surface (see shared/spec/wire-protocol.md)."""
