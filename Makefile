# Set-up and everyday commands. Every target installs into .venv first if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-slurm test-all demo bench figures real-data clean

install: $(STAMP)

# setup.py builds the C kernels of the SOT loss and the synth (csrc/); a change there reinstalls.
$(STAMP): pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch first, from this machine's disk; an unpinned torch would pull a CUDA build
	# (elsewhere: README "Install elsewhere").
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

# A real single-node SLURM cluster (needs root: installs slurm-wlm and munge with apt-get).
test-slurm: install
	$(PY) -m pytest -q -m slurm tests/apps/test_sweep_slurm.py

test-all: install
	$(PY) -m pytest -q -m ''

# The real-instrument test set (installs fluidsynth and fluid-soundfont-gm with apt-get if missing).
real-data: install
	$(PY) real_data.py

demo: install
	$(PY) scripts/demo.py

bench: install
	$(PY) benchmarks/run_all.py

figures: install
	$(PY) scripts/loss_landscape.py --out figures/loss_landscape.png

clean:
	rm -rf $(VENV) .pytest_cache build sotddsp/dsp/_native_kernels*.so
