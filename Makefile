# Set-up is idempotent: the venv is rebuilt only when pyproject.toml changes.
# CPU machines: torch==2.13.0 from the machine's wheel source (here a local CPU wheel; elsewhere
# pass TORCH_INDEX=https://download.pytorch.org/whl/cpu). GPU machines: the same pin, CUDA build.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check

TOOLS ?= .venv-tools

.PHONY: setup tools quickstart test test-fast lint format bench clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel
	$(PIP) $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	# DeepSpeed builds against the installed torch; isolation would fetch another torch.
	$(PIP) --no-build-isolation "deepspeed==0.19.8"
	$(PIP) -e ".[train,serve,dev]"
	touch $@

setup: $(VENV)/.installed

# Tools kept out of the project's environment (checkov pins old versions of shared packages).
$(TOOLS)/.installed: Makefile
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --disable-pip-version-check "checkov==3.3.30"
	touch $@

tools: $(TOOLS)/.installed

quickstart: setup
	$(VENV)/bin/vitforge quickstart

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint tools
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow and not ray"

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache
