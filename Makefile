# Set-up, training and tests on a fresh machine. Every target installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
ARGS   ?=

.PHONY: setup train test clean

setup: $(VENV)/.installed

# The pinned set in constraints.txt is exactly what CI tests; pyproject.toml keeps ranges for users.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "distgan needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --constraint constraints.txt --editable '.[test]'
	# The Inception-FID reference for the tests. Only its feature extractor is imported, which needs torch
	# alone; its declared torchvision dependency would pull a build that does not load against the CPU torch.
	$(BIN)/pip install --quiet --constraint constraints.txt --no-deps torch-fidelity
	# DeepSpeed's CPU collective op, built now where and as distgan's workers build it (this environment's
	# ninja and build directory) rather than in the first run's first minute.
	$(BIN)/python -c 'import distgan.runtime.engines as e; e.build_ops_in_this_environment(); from deepspeed.comm.torch import build_shm_op; build_shm_op()'
	touch $@

# The built-in default: DCGAN on the digits data set (configs/dcgan_digits.yaml).
train: setup
	$(BIN)/distgan train $(ARGS)

# Two passes, both always run; either failing fails the target. The in-process tests hold torch to one
# thread (tests/conftest.py), so two xdist workers use both cores, a file to a worker so that a module's
# fixtures are made once. The end-to-end tests then run in one worker beside their shared Ray, whose
# training workers take both cores themselves (run beside the first pass they would starve each other).
test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --ignore=tests/e2e; in_process=$$?; \
	$(BIN)/python -m pytest -q tests/e2e; end_to_end=$$?; \
	test $$in_process -eq 0 && test $$end_to_end -eq 0

clean:
	rm -rf $(VENV) runs .pytest_cache
