# make run   - start the collector on its embedded default (creates .venv)
# make test  - install what the tests need, lint, type-check and run every test
# make bench - the benchmarks (README.md, Benchmarks), about twenty minutes: each searches
#              for its figure within a time budget (bench/search.py)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
UWSGI_VERSION := 2.0.31
INSTALLED := $(VENV)/.installed
UWSGI := $(BIN)/uwsgi

.PHONY: run test lint typecheck unit e2e bench clean

$(BIN)/python:
	./scripts/bootstrap-system.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# setup.py builds the C extension (collector/_speedups.c) in place.
$(INSTALLED): pyproject.toml setup.py collector/_speedups.c | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# uWSGI from PyPI with logcrypto compiled in; built once and kept in the venv. No wheel
# cache: a cached wheel built without UWSGI_EMBED_PLUGINS would lack logcrypto.
$(UWSGI): | $(BIN)/python
	./scripts/bootstrap-system.sh $(PYTHON)
	UWSGI_EMBED_PLUGINS=logcrypto $(BIN)/python -m pip install --quiet --no-cache-dir \
		--no-binary uwsgi 'uwsgi==$(UWSGI_VERSION)'
	$(UWSGI) --plugins-list 2>&1 | grep -qx logcrypto || \
		{ echo "uWSGI was built without logcrypto" >&2; rm -f $(UWSGI); exit 1; }

run: $(INSTALLED)
	$(BIN)/collector serve

lint: $(INSTALLED)
	$(BIN)/ruff check .

typecheck: $(INSTALLED)
	$(BIN)/mypy

unit: $(INSTALLED)
	$(BIN)/pytest tests/unit

e2e: $(INSTALLED) $(UWSGI)
	$(BIN)/pytest tests/e2e

test: $(INSTALLED) $(UWSGI)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(INSTALLED)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/alarms.py
	$(BIN)/python bench/native.py
	$(BIN)/python bench/cluster.py
	$(BIN)/python bench/peers.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis data
