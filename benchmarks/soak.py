"""Soak: load → chat → interrupt → unload, many times, through the magics; memory should stay flat.

Not part of `make bench` or CI (it proves no speed, only that nothing accumulates). Each cycle
loads a small random-weight Llama with the next quantization of none/4bit/8bit, chats one turn,
interrupts the next turn with a forward hook raising KeyboardInterrupt (what the stop button
does), and unloads it. After every cycle it prints the resident memory (RSS) and the thread count;
at the end, the least-squares slope of RSS over the cycles after warm-up, in MB per cycle.

    python -m benchmarks.soak                 # 50 cycles
    python -m benchmarks.soak --cycles 12 --modes none
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

#: A small ChatML template, so the tiny model goes through the chat template path.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MB = 2**20


def build_model(folder: Path, width: int = 256, layers: int = 4) -> Path:
    """A random-weight Llama (tests/factories.py's recipe, wider: a leaked copy per cycle must show
    above the noise; 256 wide and 4 layers is about 7 MB in float32) with a byte-level BPE
    tokenizer and a chat template."""
    import torch
    from transformers import AutoModelForCausalLM

    from tests import factories

    tokenizer = factories.byte_bpe_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    config = factories.tiny_config("llama", len(tokenizer), eos_token_id=tokenizer.eos_token_id)
    config.hidden_size, config.intermediate_size, config.num_hidden_layers = width, 2 * width, layers
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def slope(values: list[float]) -> float:
    """Least-squares slope of `values` against 0, 1, 2, …"""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values))
    variance = sum((x - mean_x) ** 2 for x in range(n))
    return covariance / variance


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--modes", nargs="+", default=["none", "4bit", "8bit"])
    parser.add_argument("--warmup", type=int, default=6, help="Cycles left out of the slope.")
    parser.add_argument("--flat", type=float, default=0.25, help="MB/cycle still counted as flat.")
    parser.add_argument("--width", type=int, default=256, help="Hidden size of the random model.")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument(
        "--leak", action="store_true", help="Keep every model alive: shows what a leak looks like here."
    )
    args = parser.parse_args(argv)

    import psutil
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from traitlets.config import Config

    from tests.helpers import RaiseOnForward

    process = psutil.Process()
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "llm_magics")
    magics = shell.magics_manager.registry["LlmMagics"]

    def cell(text: str) -> tuple[bool, str]:
        with capture_output():
            result = shell.run_cell(text)
        error = result.error_in_exec or result.error_before_exec
        return result.success, type(error).__name__ if error else ""

    with tempfile.TemporaryDirectory(prefix="llm_magics_soak_") as scratch:
        folder = build_model(Path(scratch) / "tiny-llama", args.width, args.layers)
        weights = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / MB
        print(
            f"model: random Llama, {args.layers} layers, {args.width} wide ({weights:.1f} MB of float32 weights); "
            f"modes: {', '.join(args.modes)}; {args.cycles} cycles"
        )
        print(f"{'cycle':>5} {'mode':>5} {'RSS MB':>8} {'threads':>7} {'py threads':>10} {'seconds':>7}")
        rss: list[float] = []
        leaked: list[object] = []
        started_all = time.perf_counter()
        for index in range(args.cycles):
            mode = args.modes[index % len(args.modes)]
            started = time.perf_counter()
            ok, error = cell(f"%llm_load {folder} --quant {mode} --as soak")
            assert ok, f"load failed: {error}"
            ok, error = cell("%%llm_chat --max-new-tokens 12\nHello there")
            assert ok, f"chat failed: {error}"
            model = magics.registry.get("soak").model
            if args.leak:
                leaked.append(model)
            hook = model.register_forward_hook(RaiseOnForward(KeyboardInterrupt(), on_call=3))
            ok, error = cell("%%llm_chat --max-new-tokens 12\nAnd again")
            hook.remove()
            del model, hook
            assert not ok and error == "GenerationInterrupted", f"the interrupt gave {error or 'success'}"
            ok, error = cell("%llm_unload soak")
            assert ok, f"unload failed: {error}"
            shell.user_ns.pop("_llm_reply", None)
            gc.collect()
            rss.append(process.memory_info().rss / MB)
            print(
                f"{index + 1:>5} {mode:>5} {rss[-1]:>8.1f} {process.num_threads():>7} "
                f"{threading.active_count():>10} {time.perf_counter() - started:>7.2f}",
                flush=True,
            )
        shell.run_line_magic("unload_ext", "llm_magics")

    steady = rss[args.warmup :]
    if len(steady) < 2:
        print(f"\nToo few cycles after {args.warmup} warm-up cycles for a slope.")
        return
    per_cycle = slope(steady)
    verdict = "flat" if abs(per_cycle) <= args.flat else "GROWING" if per_cycle > 0 else "shrinking"
    print(
        f"\nRSS {rss[0]:.1f} → {rss[-1]:.1f} MB over {len(rss)} cycles "
        f"({time.perf_counter() - started_all:.0f} s); slope after {args.warmup} warm-up cycles: "
        f"{per_cycle:+.3f} MB/cycle (least squares; all cycles: {slope(rss):+.3f}); goal: flat (|slope| ≤ {args.flat} MB/cycle): {verdict}"
    )


if __name__ == "__main__":
    main()
