"""Web assets: templates and static files."""
