"""The GPU check: drives the magics in a real IPython shell on CUDA and writes gpu_check.json.

On the lent machine (no network) run it with the wheels `make gpu-wheels` prepares; on a CPU it
runs with tiny sizes and says, per section, what it skipped because it needs CUDA.
`--write-results JSON` writes the GPU section of benchmarks/RESULTS.md from a fetched JSON.

It must finish within 6 minutes on an H100, so that one retry fits the 15 minutes of device time:
each step has an H100 estimate (`H100_SECONDS`), and a step that would end past `--budget-s` is
recorded as skipped instead of run. The JSON is written after every step, so a run cut short
still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.gpu_measures import (  # noqa: E402
    build_model,
    chat_equals_generate,
    compute_dtype,
    decode_speed,
    first_token_over_turns,
    footprint,
    interrupt,
    next_and_probs,
    unload_cycles,
)
from benchmarks.gpu_report import section_markdown, write_atomically, write_results  # noqa: E402

OVER_BUDGET = "skipped: over the time budget"
SECTIONS = (
    "compute dtype",
    "chat equals generate",
    "footprint vs estimate",
    "unload gives memory back",
    "decode speed",
    "time to first token",
    "interrupt",
    "next and probs",
)
TINY = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)
ONE_B = dict(
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
)
# Llama-3-8B's body; the travelling tokenizer's 49,152 tokens make it 7.4B parameters, 14.8 GB in bf16.
EIGHT_B = dict(
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
)

# Seconds each step takes on an H100, estimated (no run yet: replace them with the "seconds" of
# the first run's JSON). The budget guard skips a step whose estimate would take it past the budget.
H100_SECONDS = {
    "build 1B": 10,  # 1.1B parameters initialised on the GPU, 2.2 GB of safetensors written
    "compute dtype": 1,
    "chat equals generate": 20,  # a bf16 load, a 4-bit load (quantised on the GPU), 24 tokens each
    "footprint vs estimate": 30,  # three loads: bf16, 8-bit, 4-bit
    "unload gives memory back": 20,  # five bf16 loads from the page cache
    "decode speed 1B": 15,  # 2 warm-ups + 5 rounds of 2 × 64 tokens at ~80 tok/s
    "time to first token": 30,  # 1 + 3 × 20 turns of 16 tokens, prompts up to ~2,000 tokens
    "interrupt": 8,
    "next and probs": 8,
    "build 8B": 45,  # 7.4B parameters initialised on the GPU, 14.8 GB of safetensors written
    "decode speed 8B": 90,  # a 4-bit load of 14.8 GB (~45 s), 2 + 3 × 2 turns of 64 tokens at ~20 tok/s
}
# Started with the pip install of the wheels and the imports (~20 s), that is about 300 s of 360.


class Budget:
    """Runs the check's steps while they fit in `seconds`; records a failing step's error and goes on.

    `save` is called after every step, so the JSON on disk always holds what has been measured.
    """

    def __init__(
        self, seconds: float, save: Callable[[], None], clock: Callable[[], float] = time.perf_counter
    ):
        self.seconds, self.save, self.clock = seconds, save, clock
        self.started = clock()
        self.spent: dict[str, float] = {}
        self.failed: list[str] = []

    def run(self, into: dict, key: str, estimate: float, step: Callable[[], Any]) -> None:
        from IPython.utils.capture import capture_output

        begun = self.clock()
        if begun - self.started + estimate > self.seconds:
            into[key] = {"skipped": OVER_BUDGET}
        else:
            try:
                with capture_output():
                    into[key] = step()
            except Exception as exc:  # one broken step must not cost the others' figures
                into[key] = {"failed": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(-8)}
                self.failed.append(key)
            self.spent[key] = self.clock() - begun
        print(f"[{self.clock() - self.started:5.0f} s] {key}: {str(into[key])[:160]}", flush=True)
        self.save()


def _shell():
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "llm_magics")
    return shell


def run_check(
    tokenizer_dir: Path, tiny: bool, budget_s: float = 330, save: Callable[[dict], None] = lambda result: None
) -> dict:
    """Every section, the 1B-shaped model's first and the 8B-shaped one last (the largest step)."""
    import torch

    from benchmarks.common import machine

    device = "cuda" if torch.cuda.is_available() else "cpu"
    plain = "--dtype bfloat16" if device == "cuda" else "--dtype float32"
    small, large = (TINY, TINY) if tiny else (ONE_B, EIGHT_B)
    # Tiny sizes run the same code with fewer repetitions, to keep the CPU test short.
    rounds, conversations = (2, 1) if tiny else (5, 3)
    shell = _shell()
    result: dict = {
        "machine": machine(),
        "device": device,
        "budget s": budget_s,
        "models": {},
        # In the order they are shown; each step fills its own ("decode speed" one row per model).
        "sections": {name: {} for name in SECTIONS},
    }
    budget = Budget(budget_s, lambda: save(result))
    result["seconds"] = budget.spent
    sections, models = result["sections"], result["models"]
    speed = sections["decode speed"]
    with tempfile.TemporaryDirectory() as work:
        one_b, eight_b = Path(work) / "llama-1b", Path(work) / "llama-8b"
        steps: list[tuple[dict, str, str, Callable[[], Any]]] = [
            (models, "1B-shaped", "build 1B", lambda: build_model(one_b, tokenizer_dir, small, device)),
            (sections, "compute dtype", "compute dtype", compute_dtype),
            (
                sections,
                "chat equals generate",
                "chat equals generate",
                lambda: [
                    chat_equals_generate(shell, one_b, plain),
                    chat_equals_generate(shell, one_b, "--quant 4bit"),
                ],
            ),
            (sections, "footprint vs estimate", "footprint vs estimate", lambda: footprint(shell, one_b)),
            (
                sections,
                "unload gives memory back",
                "unload gives memory back",
                lambda: unload_cycles(shell, one_b),
            ),
            (
                speed,
                f"1B-shaped, {plain}",
                "decode speed 1B",
                lambda: decode_speed(shell, one_b, plain, runs=rounds),
            ),
            (
                sections,
                "time to first token",
                "time to first token",
                lambda: first_token_over_turns(shell, one_b, plain, conversations=conversations),
            ),
            (sections, "interrupt", "interrupt", lambda: interrupt(shell, one_b, plain)),
            (sections, "next and probs", "next and probs", lambda: next_and_probs(shell, one_b, plain)),
            (models, "8B-shaped", "build 8B", lambda: build_model(eight_b, tokenizer_dir, large, device)),
            (
                speed,
                "8B-shaped, --quant 4bit",
                "decode speed 8B",
                lambda: decode_speed(shell, eight_b, "--quant 4bit", runs=min(rounds, 3)),
            ),
        ]
        for into, key, estimate, step in steps:
            budget.run(into, key, H100_SECONDS[estimate], step)
    result["failed"] = budget.failed
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / "build" / "gpu_check")))
    parser.add_argument("--tokenizer", type=Path, default=ROOT / ".gpu-wheels" / "tokenizer")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (the CPU test)")
    parser.add_argument(
        "--budget-s", type=float, default=330, help="skip the steps that would end past this many seconds"
    )
    parser.add_argument("--write-results", type=Path, metavar="JSON")
    args = parser.parse_args(argv)
    if args.write_results:
        write_results(section_markdown(json.loads(args.write_results.read_text())))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)

    def save(result: dict) -> None:
        write_atomically(args.out / "gpu_check.json", json.dumps(result, indent=1))

    started = time.perf_counter()
    result = run_check(args.tokenizer, args.tiny, args.budget_s, save)
    result["total seconds"] = time.perf_counter() - started
    save(result)
    write_atomically(args.out / "gpu_section.md", section_markdown(result))
    print(
        f"wrote {args.out / 'gpu_check.json'} in {result['total seconds']:.0f} s; failed: {result['failed'] or 'none'}"
    )
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
