"""safety: tables (see docs/architecture.md)."""
