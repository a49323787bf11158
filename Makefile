# `make run` and `make test` work on a fresh clone with only Python 3.11+ and make:
# uv comes from PyPI into .tools/ when it is not on PATH, then `uv sync --locked`.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)

.PHONY: install run test lint format

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet --disable-pip-version-check uv

install: $(UV)
	$(UV) sync --locked --compile-bytecode

run: install
	$(UV) run --locked sentinelops up

test: install
	$(UV) run --locked pytest

lint: install
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .
	$(UV) run --locked mypy

format: install
	$(UV) run --locked ruff format .
	$(UV) run --locked ruff check --fix .
