# Two commands on a fresh machine: `make run` tunes the bundled quickstart, `make test` runs the suite.
# Both create .venv and install hptune into it first (again only when pyproject.toml changes).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/hptune run configs/quickstart.yaml

# The distributed tests need PostgreSQL: scripts/postgres.sh starts a throwaway server (installing
# it first when run as root) and exports its URL. The report.html tests need Debian's chromium:
# scripts/chromium.sh installs it (as root) and exports its path. Without either, the tests that
# need it are skipped, except in CI.
test: install
	eval "$$(bash scripts/postgres.sh)"; eval "$$(bash scripts/chromium.sh)"; $(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

# Benchmarks against GridSearchCV, RandomizedSearchCV, HalvingRandomSearchCV and a plain Optuna
# loop; they write bench/results.md and bench/results.json (full: under 15 min on 2 cores).
# The growing-study measure runs on the throwaway PostgreSQL the tests use (skipped without one).
bench: install
	eval "$$(bash scripts/postgres.sh)"; eval "$$(bash scripts/chromium.sh)"; $(BIN)/python bench/run.py --profile full

bench-quick: install
	eval "$$(bash scripts/postgres.sh)"; eval "$$(bash scripts/chromium.sh)"; $(BIN)/python bench/run.py --profile quick --out bench/quick

lint: install
	$(BIN)/ruff check hptune tests bench

clean:
	rm -rf runs .pytest_cache
