# The two commands of the README: `make demo` and `make test`.
# Both create .venv/ at the repository root on first use and (re)install when setup.cfg changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test install data clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

data: install
	$(BIN)/keras-gen data fetch all

demo: data
	$(BIN)/keras-gen demo --out outputs

# Two pytest-xdist workers, one file (or group of files sharing fixtures) each at a time, longest
# first (the order and groups: tests/conftest.py): most of a test's time is single-threaded Python
# (tracing, child start-up), so one process would idle a core.
test: data
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) outputs .pytest_cache
