# make run   - create .venv, install, run the orders sample on the embedded broker (Ctrl-C to stop)
# make test  - create .venv, install, make sure local services are up, lint, type-check, run every test
# make bench - create .venv, install, run the benchmarks (nine suites, about 12 minutes; see README Performance)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CODE := listeners starter samples tests

.PHONY: install run test check lint typecheck pytest services bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "listeners needs Python >= 3.11; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/listeners run samples.orders.app:container --profile local

test: $(STAMP) services check pytest

check: lint typecheck

lint: $(STAMP)
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

services:
	@scripts/services.sh

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
