# One-stop set-up: every target installs into ./.venv first when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.neurolocal-installed

.PHONY: install demo test bench bench-mnist bench-quick stress lint clean

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
	$(BIN)/python benchmarks/evaluation.py
	$(BIN)/python benchmarks/lava_speed.py --samples 200 --repeats 3 --calls 2
	$(BIN)/python benchmarks/spiking_rules.py
	$(BIN)/python benchmarks/rate_speed.py --repeats 10
	$(BIN)/python benchmarks/torch_rules.py
	$(BIN)/python benchmarks/recurrent.py

# the full-MNIST online run on Lava fixed_pt beside floating_pt and snntorch (hours; resumes)
bench-mnist: $(STAMP)
	$(BIN)/python benchmarks/lava_mnist.py run --target lava:fixed_pt --lr 0.005 --passes 3
	$(BIN)/python benchmarks/lava_mnist.py run --target lava:floating_pt --lr 0.005 --passes 3
	$(BIN)/python benchmarks/lava_mnist.py run --target snntorch --lr 0.005 --passes 3
	$(BIN)/python benchmarks/lava_mnist.py table

# the hostile-user run: fuzzed rules, bad invocations, interrupts, kill -9, corrupt files
stress: $(STAMP)
	$(BIN)/python benchmarks/stress.py

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
