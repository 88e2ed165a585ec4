#!/usr/bin/env bash
# For a user's own GPU machine with a network: it installs vLLM and downloads a model from the hub.
# The lent device machine has no network, so vLLM cannot be brought to it: it runs
# benchmarks/gpu_check.py instead, with the wheels and tokenizer `make gpu-wheels` prepares.
# The remote engine against a real vLLM on a GPU. Never run by CI: it needs an NVIDIA GPU and
# network access (pip, the hub). From the repository root:
#
#   bash benchmarks/gpu_remote_check.sh [MODEL]        # default Qwen/Qwen2.5-0.5B-Instruct
#
# It installs vLLM into its own environment (.venv-vllm), serves MODEL on 127.0.0.1, runs the
# remote tests against it (tests/test_remote.py takes the endpoint from LLM_MAGICS_REMOTE_ENDPOINT;
# its test_vllm_* tests include %llm_next's distribution, which assumes vLLM's default
# --max-logprobs of 20), shows one %llm_next view from the server, checks that seeded --sample
# steps and --live's sample button drawn by the server repeat with their seed, and runs the
# streaming-overhead benchmark, then stops the server.
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
result = shell.run_cell('%llm_next --steps 6 --sample --seed 3 --top-k 5 -t 1.2 Once upon a time')
assert result.success, result.error_in_exec
"
# Seeded steps drawn by vLLM itself: the same seed must draw the same tokens (vLLM's per-request
# seed), every drawn token must be within --top-k (listed, rank <= 5), and the live session's
# sample button must repeat with its seed too. Nothing here has run on vLLM before this script.
HF_HUB_OFFLINE=0 .venv/bin/python -c "
import os
from llm_magics.engines.remote import connect
from llm_magics.next_token import Sampling, next_token_session, next_token_steps
engine = connect(os.environ['LLM_MAGICS_REMOTE_ENDPOINT'], os.environ['LLM_MAGICS_REMOTE_MODEL'])
text = 'Once upon a time'
def run(seed):
    return next_token_steps(engine, text, steps=8, sample=True, seed=seed, temperature=1.2, top_k=5)
first, again = run(7), run(7)
ids = [s.id for s in first.steps]
assert ids == [s.id for s in again.steps], (ids, [s.id for s in again.steps])
assert first.exact_sampling and all(s.rank is not None and s.rank <= 5 for s in first.steps), first.steps
others = {tuple(s.id for s in run(seed).steps) for seed in range(4)}
print('seeded steps repeat:', ids, '·', len(others), 'distinct runs for seeds 0-3')
def draws(seed):
    session = next_token_session(engine, show=5, seed=seed)
    session.set_text(text)
    return [session.append(Sampling(1.2, 5, 1.0), sample=True) for _ in range(4)]
assert draws(5) == draws(5)
print('live sample button repeats with its seed')
engine.close()
"
HF_HUB_OFFLINE=0 .venv/bin/python -c "
from benchmarks.bench_remote import streaming_overhead
import os
streaming_overhead(os.environ['LLM_MAGICS_REMOTE_ENDPOINT'], os.environ['LLM_MAGICS_REMOTE_MODEL']).print()
"
