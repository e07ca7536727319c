# syntax=docker/dockerfile:1.7
#
# One image for every role, chosen by command (docs/architecture.md; the chart sets them):
#   api        gunicorn -c python:app.gunicorn_conf app.wsgi:application   (default CMD)
#   worker     celery -A app.worker:celery_app worker
#   beat       celery -A app.worker:celery_app beat --schedule=/tmp/celerybeat-schedule
#   operator   python -m sapi_operator
#   migrate    alembic upgrade head
# No HEALTHCHECK: Kubernetes probes /livez and /readyz (docs/operations.md).
# tests/chart/test_container_build.py checks this file against the repository.

# Pin by digest in your registry mirror (python:3.11-slim-bookworm@sha256:...); the
# build stage and the runtime stage must use the same base so the venv's interpreter
# path (/usr/local/bin/python3.11) exists in both.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The uv release the Makefile pins (UV_VERSION).
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
# UV_SYSTEM_CERTS: uv trusts the image's CA store (Debian's ca-certificates, the same
# Mozilla roots uv bundles) instead of its built-in copy, so a build behind a
# TLS-inspecting proxy works by mounting that proxy's bundle over
# /etc/ssl/certs/ca-certificates.crt for the RUN steps (scripts/images/app.py does). Build
# stage only: the runtime image keeps its own trust settings.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_SYSTEM_CERTS=1
WORKDIR /src
# Dependencies first, from the lock file only: this layer is reused until uv.lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-default-groups --no-install-project
# Then the project itself, installed (not editable) into the same venv.
COPY README.md ./
COPY app ./app
COPY operator ./operator
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-default-groups --no-editable

FROM ${PYTHON_IMAGE} AS runtime
# A fixed, unprivileged uid/gid that matches the chart's runAsUser/runAsGroup.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    APP_ENV=production
WORKDIR /srv
COPY --from=build /opt/venv /opt/venv
# Alembic reads its scripts from the working directory (alembic.ini: script_location).
COPY alembic.ini ./
COPY migrations ./migrations
USER 10001:10001
# 8000: the API (gunicorn workers). 9808: METRICS_PORT, Prometheus metrics of every role
# (for the api the gunicorn master sums its workers, app/gunicorn_conf.py `when_ready`);
# it binds METRICS_ADDRESS, 127.0.0.1 unless set (the chart sets 0.0.0.0).
EXPOSE 8000 9808
# Exec form: the process is PID 1 and receives SIGTERM itself (graceful shutdown).
CMD ["gunicorn", "-c", "python:app.gunicorn_conf", "app.wsgi:application"]
