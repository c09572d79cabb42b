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

.PHONY: venv lint format test test-tools demo ui clean bench browser

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

test: lint browser test-tools $(AZURITE)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

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
