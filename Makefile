# One-stop set-up: every target installs into ./.venv first when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.neurolocal-installed

.PHONY: install demo test bench bench-quick lint clean

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

# every benchmark table of docs/benchmarks.md (hours on 2 CPU cores; results/*.json)
bench: $(STAMP)
	$(BIN)/python benchmarks/rate_rules.py --threads 1
	$(BIN)/python benchmarks/extra_rules.py --epochs 20
	$(BIN)/python benchmarks/fa_analysis.py
	$(BIN)/python benchmarks/conv_rules.py
	$(BIN)/python benchmarks/spiking.py --json benchmarks/results/spiking.json
	$(BIN)/python benchmarks/lava_learning.py dfa
	$(BIN)/python benchmarks/lava_learning.py throughput --repeats 5
	$(BIN)/python benchmarks/conversion.py

# the same scripts at smoke-test sizes (minutes): do they run?
bench-quick: $(STAMP)
	$(BIN)/python benchmarks/rate_rules.py --epochs 1 --rules bp fa --out /tmp/nl-rate-quick.json \
		--plot /tmp/nl-rate-quick.png
	$(BIN)/python benchmarks/extra_rules.py --epochs 1 --rules ar pc --limit 5000 \
		--out /tmp/nl-extra-quick.json --plot /tmp/nl-extra-quick.png
	$(BIN)/python benchmarks/conv_rules.py --epochs 1 --limit 3000 --rows dfa readout \
		--out /tmp/nl-conv-quick.json
	$(BIN)/python benchmarks/spiking.py --quick
	$(BIN)/python benchmarks/conversion.py --quick

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
