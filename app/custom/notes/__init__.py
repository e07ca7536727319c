"""Example extension: short notes stored in PostgreSQL, under `/v1/notes`."""
