# `make demo` and `make test` each set up everything they need on a fresh machine, then run:
# the Python environment (.venv) and the system packages (tools/system_packages.sh), each step
# skipped when already done.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup system-demo system-test test demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

# WordNet for keyword extraction; the tests also drive the audit report in Chromium.
system-demo: setup
	@bash tools/system_packages.sh $(BIN)/python wordnet

system-test: setup
	@bash tools/system_packages.sh $(BIN)/python wordnet browser

test: system-test
	$(BIN)/ruff check wv tests bench tools
	$(BIN)/ruff format --check wv tests bench tools
	$(BIN)/python -m pytest -q

demo: system-demo
	$(BIN)/wv demo demo-out

bench: setup
	$(BIN)/python bench/shard_build.py

clean:
	rm -rf demo-out bench-out .pytest_cache
