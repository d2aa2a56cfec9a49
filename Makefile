# Two commands for a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Each creates the virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[train,onnx,dev]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/edgeseg demo

test: $(VENV)/.installed
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo .cache/trt-stubs
