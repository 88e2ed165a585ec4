"""Goal 5: weight memory per mode (float32 / bfloat16 / 8-bit / 4-bit) for the bundled model and a
~1B-parameter random-weight Llama, as ratios to float32, beside the tutorial's claims and our
estimate; and peak process memory during the load relative to the final footprint."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import WORK, Section, fresh_process, save_random_llama

MODES = [
    ("float32", "--dtype float32"),
    ("bfloat16", "--dtype bfloat16"),
    ("8-bit", "--quant 8bit"),
    ("4-bit", "--quant 4bit"),
]
TUTORIAL = {"float32": "100%", "bfloat16": "50%", "8-bit": "-", "4-bit": "~25%"}

# One load per fresh process. The peak is the kernel's high-water mark (VmHWM), reset just before
# the load: ru_maxrss would carry the parent's peak across fork and exec.
_ONE_LOAD = """
import gc, json, re
import psutil, torch, transformers  # imported before the baseline: they are not the model
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from llm_magics.engines.transformers.memory import estimate_memory
from llm_magics.engines.transformers.plan import plan_load, plan_mode
from llm_magics.engines.transformers.source import resolve_source
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "llm_magics")
source = resolve_source({model!r})
args = {options!r}.split()
plan = plan_load(source, quantization=args[1] if args[0] == "--quant" else "none",
                         dtype=args[1] if args[0] == "--dtype" else "auto")
estimate = estimate_memory(plan).bytes_for(plan_mode(plan))
gc.collect()
baseline = psutil.Process().memory_info().rss
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
with capture_output():
    ip.run_line_magic("llm_load", {model!r} + " " + {options!r} + " --as m")
info = ip.magics_manager.registry["LlmMagics"].registry.get("m").describe()
with open("/proc/self/status") as f:
    peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1)) * 1024
print(json.dumps({{"footprint": info.footprint_bytes, "estimate": estimate,
                  "peak_over_baseline": peak - baseline, "parameters": info.parameters}}))
"""


def random_llama_1b(folder: Path = WORK / "random-llama-1b") -> Path:
    """A TinyLlama-shaped model (1.1B parameters) with random weights, saved once in bfloat16.

    Built in a fresh process, so its 2 GB never sit in the process that runs the measurements."""
    if not (folder / "config.json").is_file():
        fresh_process(
            f"import json; from benchmarks.bench_memory import _build_random_llama_1b; "
            f"from pathlib import Path; _build_random_llama_1b(Path({str(folder)!r})); print(json.dumps({{}}))"
        )
    return folder


def _build_random_llama_1b(folder: Path) -> None:
    shape = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32)
    save_random_llama(folder, dtype="bfloat16", num_key_value_heads=4, **shape)


def run(models: dict[str, str] | None = None) -> Section:
    models = models or {"SmolLM2-135M (bundled)": "smollm2-135m", "random Llama 1.1B": str(random_llama_1b())}
    section = Section(
        "Memory of the weights per mode",
        [
            "model",
            "mode",
            "footprint",
            "vs float32",
            "tutorial says",
            "--estimate",
            "estimate error",
            "peak during load / footprint",
        ],
    )
    within = []
    for label, model in models.items():
        base = None
        for mode, options in MODES:
            result = fresh_process(_ONE_LOAD.format(model=model, options=options))
            footprint = result["footprint"]
            base = base or footprint
            error = (result["estimate"] - footprint) / footprint
            within.append(abs(error) < 0.15)
            section.rows.append(
                [
                    label,
                    mode,
                    f"{footprint / 1e6:,.0f} MB",
                    f"{100 * footprint / base:.0f}%",
                    TUTORIAL[mode],
                    f"{result['estimate'] / 1e6:,.0f} MB",
                    f"{100 * error:+.1f}%",
                    f"{result['peak_over_baseline'] / footprint:.2f}",
                ]
            )
    section.goals = [("`--estimate` within 15% of the measured footprint in every mode", all(within))]
    section.notes = [
        "Quantized modes keep embeddings and the output head unquantized (in the compute dtype), so a "
        "small model with a large vocabulary saves less than the tutorial's figures, which assume the "
        "linear layers dominate. Peak is the process's maximum resident memory during the load, over "
        "its memory just before. Where the requested dtype is the one stored on disk (float32 for the "
        "converted SmolLM2, bfloat16 for the random Llama), safetensors maps the file and pages arrive on "
        "first use, so the load itself barely raises resident memory."
    ]
    return section


if __name__ == "__main__":
    run().print()
