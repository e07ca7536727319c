"""Example extension: each signed-in user's short notes, in PostgreSQL, under `/v1/notes`."""
