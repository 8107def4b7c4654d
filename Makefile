# One-stop set-up: every target installs into ./.venv first when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.neurolocal-installed

.PHONY: install demo test bench lint clean

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[all]"
	# lava-nc declares Requires-Python <3.11; its deps are pinned via the [lava] extra above.
	# neurolocal.hardware.lava_compat patches its one Python-3.11 incompatibility at import time.
	$(BIN)/pip install -q --no-deps --ignore-requires-python "lava-nc==0.10.0"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/neurolocal demo

test: $(STAMP)
	$(BIN)/python -m pytest tests

bench: $(STAMP)
	$(BIN)/python benchmarks/rate_rules.py

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
