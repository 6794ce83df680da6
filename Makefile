# The project's one workflow. A newcomer needs two targets: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: `make serve` installs only what the server needs; `make test` (and every target that
# needs the developer tools: pytest, playwright, mypy, ruff, the openai SDK…) adds the dev extras.
SERVE_STAMP := $(VENV)/.installed-serve
DEV_STAMP := $(VENV)/.installed-dev
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install serve test check format bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(SERVE_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e .
	touch $(SERVE_STAMP)

# The dev extras include the server's own dependencies, so this stamp also satisfies `make serve`.
$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(SERVE_STAMP) $(DEV_STAMP)

install: $(DEV_STAMP)

serve: $(SERVE_STAMP)  ## set up and start the server on http://$(HOST):$(PORT)/v1
	$(BIN)/openassistants serve --host $(HOST) --port $(PORT)

test: $(DEV_STAMP)  ## set up and run the whole test suite (SQLite and, when reachable, PostgreSQL)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: $(DEV_STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

format: $(DEV_STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(DEV_STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .sdk-venvs tests/node/node_modules
