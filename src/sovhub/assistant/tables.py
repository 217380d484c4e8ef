"""assistant: tables (see docs/architecture.md)."""
