# The project's vocabulary. Each target is a thin call into a script or tool; `make` alone
# lists them. Python, its tools and the dev servers all come from the uv-managed .venv.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

UV_VERSION := 0.13.8
# `python3 -m uv` works right after a pip install, before any PATH or pyenv shim refresh.
UV := $(if $(shell command -v uv 2>/dev/null),uv,python3 -m uv)
# --frozen: run from uv.lock as it is; never re-lock as a side effect of a target.
RUN := $(UV) run --frozen
PYTEST := $(RUN) pytest -p no:cacheprovider
# Marks that need extra machinery or minutes; `test-fast` leaves them out, `test` runs all.
SLOW_MARKS := slow or browser or k8s or cluster or images or chaos or bench_smoke

.PHONY: help venv tools dev lint test test-fast control-plane images cluster cluster-down bench chaos \
	chart-test docs crds clean clean-dev flask

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

venv: ## Install uv if missing, then create .venv exactly from uv.lock
	@$(UV) --version >/dev/null 2>&1 || \
		PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen

tools: ## Install the Debian packages the suite uses when missing (Chromium, promtool, wrk, setpriv)
	scripts/install-test-tools.sh

dev: venv ## Run api, worker, beat, AI simulator (+ PostgreSQL, Redis unless DATABASE_URL/REDIS_URL)
	$(RUN) python scripts/dev.py

# ARGS: the command line, e.g. `make flask ARGS="users list"` (same as `uv run flask users list`).
flask: venv ## Run a `flask ...` command against the dev stack (settings from .dev/env)
	$(RUN) flask $(ARGS)

lint: ## ruff (lint + format check), mypy and the import layers (import-linter)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) lint-imports

# pytest's exit code 5 (no tests collected) fails the target like any other failure.
# tools, control-plane and the base images come first so their progress shows (a cold
# build takes minutes) instead of a silent fixture.
test: venv tools control-plane images-base lint ## Install/build what the suite needs, lint, every mark
	$(PYTEST) -m ""

test-fast: venv ## The suite without slow, browser, k8s, chaos and bench_smoke tests
	$(PYTEST) -m "not ($(SLOW_MARKS))"

docs: venv ## Regenerate generated docs (error catalogue, README settings table, CRDs)
	$(RUN) python scripts/gen_docs.py
	$(RUN) python scripts/gen_crds.py

crds: venv ## Regenerate the CRD YAML, operator RBAC and docs/crds.md from app/core/specs
	$(RUN) python scripts/gen_crds.py

control-plane: ## Build etcd, kube-apiserver, the cluster's binaries, Traefik and Prometheus into .cache/control-plane
	scripts/build-control-plane.sh cluster
	scripts/build-control-plane.sh traefik
	scripts/build-control-plane.sh prometheus

images-base: venv ## Build the local Python and uv base images (.cache/images; root, buildah)
	PYTHONPATH=scripts $(RUN) python -m images build base

images: venv ## Build every container image with buildah: bases, the app, dev dependencies
	PYTHONPATH=scripts $(RUN) python -m images build all

# Starts the node (scripts/cluster.py up --detach) unless one runs, then installs the app;
# a second `make cluster` reuses the running node and upgrades the release in place.
cluster: venv control-plane ## The one-node cluster running the app behind an ingress, Prometheus (root; docs/cluster.md)
	$(RUN) python scripts/devcluster.py up

cluster-down: venv ## Stop the cluster and remove everything it left (also after a killed up)
	$(RUN) python scripts/cluster.py down

bench: venv ## Pipeline benchmark + every bench/ script into bench/results/ (docs/performance.md)
	$(RUN) python -m bench.run

# CHAOS_DURATION: seconds of steady load around each fault in tests/chaos (short form in `test`).
chaos: venv ## Tests that kill and restart real dependencies; tests/chaos runs its long form
	CHAOS_DURATION=$${CHAOS_DURATION:-20} $(PYTEST) -m chaos

chart-test: venv ## Helm chart tests against a real kube-apiserver (the k8s mark)
	$(PYTEST) -m k8s

clean: ## Remove caches and build output (keeps .venv, .dev data and .cache binaries)
	rm -rf .pytest_cache .mypy_cache .ruff_cache dist build
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

clean-dev: ## Delete the dev stack's data (.dev: database, logs, beat schedule)
	rm -rf .dev
