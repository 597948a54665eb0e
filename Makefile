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

# Two pytest-xdist workers, one file each at a time (module fixtures built once): most of a
# test's time is single-threaded Python (tracing, child start-up), so one process idles a core.
test: data
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) outputs .pytest_cache
