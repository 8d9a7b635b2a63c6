# Two commands do all set-up: `make lab` opens the course, `make test` runs every test.
# Both create the virtual environment first if it is missing (pinned by constraints.txt).

# `=`, not `?=`: a PYTHON or VENV exported for another project (node-gyp reads PYTHON) must not choose the
# course's Python or install the course's pins into another environment; `make VENV=...` still does.
PYTHON = python3
VENV = .venv
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0
TRITON_VERSION := 3.9.0
# An index to take torch from, e.g. https://download.pytorch.org/whl/cpu on a Linux machine without
# an NVIDIA GPU (PyPI's Linux torch is the CUDA build, several GB more). `make venv` searches it, beside
# PyPI, when it installs torch (and what torch needs); `make wheelhouse` searches it for every package.
# The environment keeps the index it was made with (.torch-index in it), so that a reinstall after an
# update of the pins takes torch from there again; TORCH_INDEX= (empty) goes back to PyPI.
TORCH_INDEX ?= $(shell cat $(VENV)/.torch-index 2>/dev/null)
# JupyterLab refuses to start as root unless told.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
# A folder of wheels (`make wheelhouse`): when it holds any, every install reads them alone, no network.
WHEELHOUSE ?= wheelhouse
PIP_FROM := $(if $(wildcard $(WHEELHOUSE)/*.whl),--no-index --find-links $(WHEELHOUSE),)
GPT_OSS_REF := gpt-oss==0.0.9
# More options for JupyterLab, e.g. LAB_ARGS="--no-browser --port 8888" on a remote GPU machine.
LAB_ARGS ?=

.PHONY: lab test test-fast test-browser student venv clean-venv wheelhouse

venv: $(VENV)/.installed

# The Makefile too: it pins torch and triton, and a new pin must reinstall.
$(VENV)/.installed: pyproject.toml constraints.txt Makefile
	@# An existing environment (e.g. a conda env passed as VENV=$$CONDA_PREFIX) is not recreated: the
	@# pinned packages are installed into it.
	@# A .venv that `python3 -m venv` left half-made (no pip: Debian's python3-venv missing) is made again.
	@if [ "$(VENV)" = .venv ] && [ -x $(PY) ] && ! $(PY) -m pip --version >/dev/null 2>&1; then \
	  echo "$(VENV) has no pip (an earlier python3 -m venv failed part-way): making it again"; rm -rf $(VENV); fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || { [ "$(VENV)" != .venv ] || rm -rf $(VENV); \
	  echo "$(PYTHON) -m venv failed: on Debian or Ubuntu, install python3-venv (sudo apt install python3-venv), then run make again"; exit 1; }
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "The course needs Python 3.11 or newer, and " + sys.executable + " is " + sys.version.split()[0] + ": run make clean-venv, then make PYTHON=python3.11 (or newer).")'
	@[ -z "$(PIP_FROM)" ] || echo "installing from $(WHEELHOUSE)/ alone, without the network (wheels made by make wheelhouse for one kind of machine; move the folder away to install from the network)"
	$(PY) -m pip install --quiet $(PIP_FROM) -c constraints.txt --upgrade pip
	$(PY) -m pip install --quiet $(PIP_FROM) -c constraints.txt $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple) torch==$(TORCH_VERSION)
	@$(if $(TORCH_INDEX),echo '$(TORCH_INDEX)' > $(VENV)/.torch-index,rm -f $(VENV)/.torch-index)
	$(PY) -m pip install --quiet $(PIP_FROM) -c constraints.txt --build-constraint constraints.txt -e ".[dev]"
	@# OpenAI's reference torch model, a second reference for the tests; it declares Python >= 3.12
	@# but needs only torch and safetensors.
	$(PY) -m pip install --quiet $(PIP_FROM) --no-deps --ignore-requires-python $(GPT_OSS_REF)
	@# CUDA builds of torch bring their own matching Triton; the CPU build needs it added, at the pin.
	$(PY) -c "import sys, torch, triton; sys.exit(torch.version.cuda is None and triton.__version__ != '$(TRITON_VERSION)')" 2>/dev/null \
	  || $(PY) -m pip install --quiet $(PIP_FROM) triton==$(TRITON_VERSION) \
	  || echo "Triton has no build for this platform (it needs Linux): notebook 10, the kernels, cannot run here; every other notebook can."
	touch $@

# For a class on a slow or no network: on one machine with the network, download every wheel `make venv`
# installs into wheelhouse/; copied with the repository to machines like this one (the same OS, kind of
# CPU and Python version), `make lab` and `make test` then install from it alone.
wheelhouse: venv
	$(PY) -m pip download --quiet --dest $(WHEELHOUSE) -c constraints.txt $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple) \
	  pip setuptools wheel torch==$(TORCH_VERSION) ".[dev]"
	$(PY) -m pip download --quiet --dest $(WHEELHOUSE) --no-deps --ignore-requires-python $(GPT_OSS_REF)
	@# A CUDA torch names its own Triton, downloaded with it; the CPU build needs the pinned one.
	ls $(WHEELHOUSE)/triton-*.whl >/dev/null 2>&1 || $(PY) -m pip download --quiet --dest $(WHEELHOUSE) triton==$(TRITON_VERSION) \
	  || echo "Triton has no build for this platform (it needs Linux): the wheelhouse has none"
	@echo "$$(ls $(WHEELHOUSE)/*.whl | wc -l) wheels, $$(du -sh $(WHEELHOUSE) | cut -f1), in $(WHEELHOUSE)/: copy it with the repository"

lab: venv
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) $(LAB_ARGS) notebooks/00_welcome.ipynb

# Tests never reach the network (HF_HUB_OFFLINE), and notebook 13 trains on its short schedule. The
# notebooks run as on CI, without a GPU, even on a machine with one (conftest.py, at the top).
test: venv
	HF_HUB_OFFLINE=1 GPTOSS_EDU_QUICK=1 $(PY) -m pytest tests notebooks --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

test-fast: venv
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests -m "not slow and not browser"

# The browser tests alone (JupyterLab in headless Chromium), as `make test` runs them; scripts/install_browser.sh
# installs Chromium.
test-browser: venv
	HF_HUB_OFFLINE=1 GPTOSS_EDU_QUICK=1 $(PY) -m pytest tests/browser -m browser

student: venv
	$(PY) -m gptoss_edu student notebooks student

clean-venv:
	@# Only the course's own .venv: VENV=$$CONDA_PREFIX here would delete a whole conda environment.
	@[ "$(VENV)" = .venv ] || { echo "make clean-venv removes only the course's .venv, not $(VENV); remove a conda environment with: conda env remove -n gptoss-edu"; exit 1; }
	rm -rf $(VENV)
