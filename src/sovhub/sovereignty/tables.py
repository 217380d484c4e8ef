"""sovereignty: tables (see docs/architecture.md)."""
