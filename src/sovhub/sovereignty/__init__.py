"""sovereignty."""
