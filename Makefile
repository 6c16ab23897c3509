# The two commands of the README: `make demo` and `make test`. Both set up
# .venv on a fresh machine first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench bench-quick clean test-pythons dist-check ci docs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,cli]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m jobwatch demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict jobwatch tests/typing

# Every test, the slow ones too: pyproject.toml's addopts leave them out of a plain
# `pytest`, and this later -m wins.
test: lint typecheck
	$(BIN)/python -m pytest --cov --cov-report=term -m "slow or not slow"

# The documentation site (docs/, mkdocs.yml) into site/; --strict turns every
# warning (a broken link or anchor, a page missing from the nav) into a failure.
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[peer]'
	$(BIN)/python -m benchmarks

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick

# The suite (pytest alone) on each of Python 3.11, 3.12, 3.13 found here, each
# in its own nox venv; nox itself lives in CI's tools venv, build/ci/tools.
test-pythons:
	"$$(.ci/tools-venv)/nox" $(NOXFLAGS)

# Build the sdist and the wheel, check them, install the wheel in a fresh venv
# and run `jobwatch demo --jobs 50` from it.
dist-check:
	.ci/dist-check

# What CI runs: make test, dist-check, and the suite on the other Pythons.
ci:
	.ci/run

clean:
	rm -rf $(VENV) .coverage .pytest_cache .mypy_cache .ruff_cache build/ci site
