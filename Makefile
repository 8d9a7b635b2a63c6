# Two commands do all set-up: `make lab` opens the course, `make test` runs every test.
# Both create the virtual environment first if it is missing (pinned by constraints.txt).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0
TRITON_VERSION := 3.9.0
# JupyterLab refuses to start as root unless told.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test test-fast test-browser student venv clean-venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@# An existing environment (e.g. a conda env passed as VENV=$$CONDA_PREFIX) is used as it is.
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	@# OpenAI's reference torch model, a second reference for the tests; it declares Python >= 3.12
	@# but needs only torch and safetensors.
	$(PY) -m pip install --quiet --no-deps --ignore-requires-python gpt-oss==0.0.9
	@# CUDA builds of torch bring their own matching Triton; the CPU build needs it added.
	$(PY) -c "import triton" 2>/dev/null || $(PY) -m pip install --quiet triton==$(TRITON_VERSION) \
	  || echo "Triton is not available on this platform: the kernel cells run their PyTorch references only."
	touch $@

lab: venv
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) notebooks/00_welcome.ipynb

# Tests never reach the network (HF_HUB_OFFLINE), and notebook 13 trains on its short schedule.
test: venv
	HF_HUB_OFFLINE=1 GPTOSS_EDU_QUICK=1 $(PY) -m pytest tests notebooks --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

test-fast: venv
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests -m "not slow and not browser"

# The browser tests alone (JupyterLab in headless Chromium); scripts/install_browser.sh installs Chromium.
test-browser: venv
	$(PY) -m pytest tests/browser -m browser

student: venv
	$(PY) -m gptoss_edu student notebooks student

clean-venv:
	rm -rf $(VENV)
