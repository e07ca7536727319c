"""Runtime config: API versions, rate-limit policies and AI providers, in PostgreSQL.

* `models.py` - the control tables; `service.py` - upserts, deletes and status, used by the
  admin API, the operator and the CLI alike; `audit.py` - the change log;
* `snapshot.py`, `loader.py`, `store.py` - the immutable per-process snapshot and its
  reloads; `channel.py` + `watcher.py` - the Redis "config changed" announcements;
* `views.py` - `/v1/admin/{api-versions,rate-limit-policies,ai-providers}`,
  `/v1/admin/config`, `/v1/admin/audit`; `cli.py` - `flask config show`;
* `extension.py` - `init_app` and the accessors (`config_store()`, `current_snapshot()`).

See docs/config-store.md. Nothing is imported here: the operator writes rows through
`service.py` without Flask.
"""
