# Kunde — one command interface. `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements.lock
PORT   ?= 8000

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast lint typecheck fmt bench serve worker lock clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(wildcard $(LOCK))
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(if $(wildcard $(LOCK)),-c $(LOCK)) -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install Kunde with its development tools

demo: $(STAMP) ## Start Kunde on embedded SQLite with demo data (PORT=8000)
	$(BIN)/kunde demo --port $(PORT)

serve: $(STAMP) ## Run the server on the configured database
	$(BIN)/kunde serve --port $(PORT)

worker: $(STAMP) ## Run a background worker
	$(BIN)/kunde worker

test: $(STAMP) ## Run the tests (SQLite; PostgreSQL too when KUNDE_TEST_POSTGRES_URL is set)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP) ## Run the tests without the browser ones
	$(BIN)/python -m pytest -q -m "not browser"

lint: $(STAMP) ## ruff and mypy --strict on src/
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

fmt: $(STAMP) ## Fix what ruff can fix
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP) ## Run every benchmark in bench/ and print a table (JSON in bench/results/)
	$(BIN)/python -m bench

lock: $(STAMP) ## Re-pin every dependency into requirements.lock
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > $(LOCK)

clean: ## Remove the virtualenv, caches and demo data
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache kunde-data bench/results
