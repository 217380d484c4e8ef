"""access: tables (see docs/architecture.md)."""
