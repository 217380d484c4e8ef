"""POST /v1/moderations: OpenAI-compatible moderation over sovhub's hazard taxonomy."""
