"""The Files API: uploads kept encrypted in the database, under their organization's data key."""
