"""Structured API: the Flask service, one package per capability.

`factory.py` builds the app (`create_app(settings=None)`), `settings/` holds the one typed
`Settings`; `core/` is infrastructure, `auth/`, `config_store/`, `ratelimit/`, `cache/`,
`versioning/`, `ai/` are the features, `api/` assembles the versions, `custom/` is the
extension point. Nothing is imported here, so the operator and scripts can import
`app.settings`, `app.core...` or a feature's Flask-free modules without building the app.
docs/architecture.md maps it all.
"""
