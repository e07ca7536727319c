"""Tables of the auth feature: `user.py`, `api_key.py`, `session.py` (sessions, refresh tokens)."""
