# defender-soar: `make demo` and `make test` work on a fresh machine (Python 3.11 + make).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Keep Prefect local, quiet and offline unless the caller points it at a server.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90

.PHONY: venv demo test lint bench emulator clean

venv: $(STAMP)

# Compatible ranges in pyproject.toml; the exact version of every package (transitive too) in constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m flows.demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/hunting.py

# The emulator on fixed ports (8443 all, 8444 Graph only, 8445 MDE only); .emulator/ keeps its IDs, secret and CA.
EMULATOR_STATE ?= $(CURDIR)/.emulator
emulator: $(STAMP)
	$(PY) -m emulator --port 8443 --state-dir $(EMULATOR_STATE) $(EMULATOR_ARGS)

clean:
	rm -rf $(VENV) .prefect .pytest_cache benchmarks/results
