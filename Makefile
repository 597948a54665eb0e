# The two commands of the README: `make demo` and `make test`.
# Both create .venv/ at the repository root on first use and (re)install when setup.cfg changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: notebooks demo test install data browser clean

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

# notebooks/*.ipynb from the tutorials' `# %%` cells (the scripts are the source; tests/test_docs.py
# fails when a notebook is not current).
notebooks: install
	$(BIN)/python tools/notebooks.py

# The report page test (tests/test_evaluation.py) opens the page in Debian's chromium through
# chromium-driver. Best effort: installed quietly where it is missing and apt-get runs as root
# (about 1.5 min with apt-get update here); elsewhere this says so and that one test skips.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium and chromium-driver for the report page test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
	    >/dev/null 2>&1 || echo "could not install chromium: the report page test will skip"; \
	else echo "no chromium and no apt-get as root: the report page test will skip"; fi

# Two pytest-xdist workers, one file (or group of files sharing fixtures) each at a time, longest
# first (the order and groups: tests/conftest.py): most of a test's time is single-threaded Python
# (tracing, child start-up), so one process would idle a core.
test: data browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) outputs .pytest_cache
