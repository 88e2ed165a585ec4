#!/usr/bin/env bash
# The remote engine against a real vLLM on a GPU. Never run by CI: it needs an NVIDIA GPU and
# network access (pip, the hub). From the repository root:
#
#   bash benchmarks/gpu_remote_check.sh [MODEL]        # default Qwen/Qwen2.5-0.5B-Instruct
#
# It installs vLLM into its own environment (.venv-vllm), serves MODEL on 127.0.0.1, runs the
# remote tests against it (tests/test_remote.py takes the endpoint from LLM_MAGICS_REMOTE_ENDPOINT;
# its test_vllm_* tests include %llm_next's distribution, which assumes vLLM's default
# --max-logprobs of 20), shows one %llm_next view from the server, and runs the streaming-overhead
# benchmark, then stops the server.
set -euo pipefail

MODEL="${1:-Qwen/Qwen2.5-0.5B-Instruct}"
PORT="${PORT:-8011}"
VLLM_VENV="${VLLM_VENV:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"
mkdir -p build

if [ ! -x "$VLLM_VENV/bin/vllm" ]; then
    "$PYTHON" -m venv "$VLLM_VENV"
    "$VLLM_VENV/bin/python" -m pip install -q --upgrade pip
    "$VLLM_VENV/bin/python" -m pip install -q vllm
fi
make env

# Loopback only; a small context and a share of the GPU are plenty for the tests.
"$VLLM_VENV/bin/vllm" serve "$MODEL" --host 127.0.0.1 --port "$PORT" \
    --max-model-len 4096 --gpu-memory-utilization 0.5 > build/vllm.log 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true' EXIT

for _ in $(seq 1 600); do
    if curl -fs "http://127.0.0.1:$PORT/health" > /dev/null; then break; fi
    if ! kill -0 "$SERVER" 2>/dev/null; then tail -50 build/vllm.log; exit 1; fi
    sleep 1
done
curl -fs "http://127.0.0.1:$PORT/health" > /dev/null || { tail -50 build/vllm.log; exit 1; }

export LLM_MAGICS_REMOTE_ENDPOINT="http://127.0.0.1:$PORT/v1"
export LLM_MAGICS_REMOTE_MODEL="$MODEL"
# The hub is reachable here (the vLLM tests read the model's own tokenizer to compare).
HF_HUB_OFFLINE=0 .venv/bin/python -m pytest tests/test_remote.py tests/test_remote_tokens.py \
    tests/test_remote_magics.py -q -p no:cacheprovider -o addopts="--strict-markers -ra"
# %llm_next against the real server, as a notebook runs it: it must show a distribution.
HF_HUB_OFFLINE=0 .venv/bin/python -c "
import os
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic('load_ext', 'llm_magics')
endpoint, model = os.environ['LLM_MAGICS_REMOTE_ENDPOINT'], os.environ['LLM_MAGICS_REMOTE_MODEL']
shell.run_line_magic('llm_load', f'{model} --endpoint {endpoint} --as served')
result = shell.run_cell('%llm_next --top-k 5 --temperature 0.7 The capital of France is')
assert result.success, result.error_in_exec
result = shell.run_cell('%llm_next --steps 4 The capital of France is')
assert result.success, result.error_in_exec
"
HF_HUB_OFFLINE=0 .venv/bin/python -c "
from benchmarks.bench_remote import streaming_overhead
import os
streaming_overhead(os.environ['LLM_MAGICS_REMOTE_ENDPOINT'], os.environ['LLM_MAGICS_REMOTE_MODEL']).print()
"
