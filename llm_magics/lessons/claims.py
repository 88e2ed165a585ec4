"""Checking a lesson's claims about quantization against numbers measured on this machine.

Courses say that 4-bit takes ~25% of float32's memory, runs "similar or slightly faster" and is
1-3% worse. Whether that holds depends on the model and the hardware (a 135M model keeps its large
embedding in 16 bits; a CPU unpacks 4-bit weights in software). `measure` takes one row per loaded
precision, `claim_sentences` turns the rows into sentences that say where each claim holds *here*,
so a notebook never prints prose its own table contradicts. Rows are rounded as they are shown, and
the sentences are computed from the rounded rows: a reader (or a test) who recomputes them from the
table gets the same words. No IPython here; torch only through the engine.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..engines.base import Completes, Engine, ScoresTokens, Tokenizes
from ..engines.transformers.hardware import Hardware, detect_hardware
from ..errors import InvalidOption
from ..values import GenerationOptions

#: The lesson's numbers: share of float32's memory, and how much worse perplexity may get.
LESSON_MEMORY = {"16-bit": 0.50, "4bit": 0.25}  # it gives no figure for 8-bit
LESSON_ACCURACY = (0.01, 0.03)  # "1-3% worse"
#: Within this many percentage points of the lesson's share, "~25%" counts as met.
MEMORY_TOLERANCE = 0.05
#: "Similar" speed: at least this share of float32's tokens per second; "slightly faster": at most
#: the upper bound. Beyond it the mode is faster than the lesson promises.
SIMILAR_SPEED = (0.9, 1.25)

COLUMNS = ("mode", "weights", "footprint (MB)", "vs float32", "tokens/s", "perplexity", "sample")


@dataclass(frozen=True)
class Modes:
    """The precisions to measure on this hardware, and one line about those skipped (or None)."""

    modes: tuple[str, ...]
    skipped: str | None


def modes_for(hardware: Hardware | None = None, *, bitsandbytes: bool | None = None) -> Modes:
    """float32, the 16-bit float this hardware (this machine's by default) computes in, and
    8-/4-bit where bitsandbytes is there.

    The 16-bit mode is float16 on GPUs without bfloat16 units (a T4) and on Apple GPUs, else bfloat16.
    """
    if bitsandbytes is None:
        bitsandbytes = importlib.util.find_spec("bitsandbytes") is not None
    hardware = hardware or detect_hardware()
    major = (hardware.cuda_capability or (0, 0))[0]
    half = "float16" if hardware.device == "mps" or (hardware.device == "cuda" and major < 8) else "bfloat16"
    if bitsandbytes:
        return Modes(("float32", half, "8bit", "4bit"), None)
    return Modes(
        ("float32", half),
        "Skipped 8bit and 4bit: bitsandbytes is not installed (pip install bitsandbytes).",
    )


def measure(
    engine: Engine, mode: str, *, text: str, prompt: str, new_tokens: int = 16, repeats: int = 3
) -> dict[str, Any]:
    """One row: the footprint of the weights, the decoding speed of a greedy continuation of
    `prompt` (the best of `repeats` runs: on a shared machine the slower runs measure the other
    programs), and the perplexity of `text` (exp of the mean loss of its tokens 2..n)."""
    if not (
        isinstance(engine, ScoresTokens) and isinstance(engine, Completes) and isinstance(engine, Tokenizes)
    ):
        raise InvalidOption(f"{mode}: this engine cannot score and continue text in this process.")
    ids = engine.tokenizer(text)["input_ids"]
    perplexity = engine.token_probabilities(ids, top_k=1).perplexity
    # A first, untimed call: the first generation pays for allocations the others do not.
    engine.complete(prompt, GenerationOptions(max_new_tokens=2))
    replies = [engine.complete(prompt, GenerationOptions(max_new_tokens=new_tokens)) for _ in range(repeats)]
    speeds = [r.stats.tokens_per_second for r in replies if r.stats.tokens_per_second is not None]
    info = engine.describe()
    return {
        "mode": mode,
        "weights": info.quantization if info.quantization != "none" else info.dtype,
        "footprint (MB)": info.footprint_bytes / 1e6,
        "tokens/s": max(speeds, default=float("nan")),
        "perplexity": perplexity if perplexity is not None else float("nan"),
        "sample": replies[-1].text.strip(),
    }


def rounded(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows as the table shows them (MB and tokens/s to 0.1, perplexity to 0.01, memory as a
    whole percentage of float32's), in `COLUMNS` order."""
    base = _row(rows, "float32")["footprint (MB)"]
    out = []
    for row in rows:
        out.append(
            {
                "mode": row["mode"],
                "weights": row["weights"],
                "footprint (MB)": round(row["footprint (MB)"], 1),
                "vs float32": round(100 * row["footprint (MB)"] / base),
                "tokens/s": round(row["tokens/s"], 1),
                "perplexity": round(row["perplexity"], 2),
                "sample": row["sample"],
            }
        )
    return out


def _row(rows: Sequence[Mapping[str, Any]], mode: str) -> Mapping[str, Any]:
    for row in rows:
        if row["mode"] == mode:
            return row
    raise InvalidOption(f"No {mode} row: measure float32 first, it is what the others are compared with.")


def _percent(value: float) -> str:
    return f"{value:.0%}"


def memory_sentence(rows: Sequence[Mapping[str, Any]], mode: str) -> str:
    """Memory of `mode` as a share of float32's, against the lesson's share."""
    share = _row(rows, mode)["vs float32"] / 100
    lesson = LESSON_MEMORY.get("16-bit" if mode in ("bfloat16", "float16") else mode)
    if lesson is None:
        return (
            f"Memory: {mode} used {_percent(share)} of float32's memory (the lesson gives no figure for it)."
        )
    said = f"~{lesson:.0%}" if mode == "4bit" else f"{lesson:.0%}"
    if abs(share - lesson) <= MEMORY_TOLERANCE:
        verdict = f"the lesson's {said} holds"
    elif share > lesson:
        verdict = f"more than the lesson's {said}: not met"
    else:
        verdict = f"less than the lesson's {said}: better than promised"
    return f"Memory: {mode} used {_percent(share)} of float32's memory, {verdict}."


def speed_sentence(rows: Sequence[Mapping[str, Any]], mode: str = "4bit") -> str:
    """Decoding speed of `mode` against float32's, and which mode was fastest here."""
    base = _row(rows, "float32")["tokens/s"]
    speed = _row(rows, mode)["tokens/s"]
    ratio = speed / base
    fastest = max(rows, key=lambda row: row["tokens/s"])["mode"]
    low, high = SIMILAR_SPEED
    if ratio < low:
        verdict = "slower: 'similar or slightly faster' does not hold here"
    elif ratio <= high:
        verdict = "'similar or slightly faster' holds here"
    else:
        verdict = "faster than 'similar or slightly faster' says"
    return (
        f"Speed: {mode} decoded {speed:.1f} tokens/s against float32's {base:.1f} "
        f"({_percent(ratio)} of it), {verdict}; the fastest mode here was {fastest}."
    )


def accuracy_sentence(rows: Sequence[Mapping[str, Any]], mode: str = "4bit") -> str:
    """Perplexity of `mode` against float32's, against the lesson's 1-3% loss."""
    base = _row(rows, "float32")["perplexity"]
    value = _row(rows, mode)["perplexity"]
    change = value / base - 1
    low, high = LESSON_ACCURACY
    if change > high:
        verdict = "more than the lesson's 1-3% worse"
    elif change >= low:
        verdict = "within the lesson's 1-3% worse"
    else:
        verdict = "less than the lesson's 1-3% worse"
    return f"Quality: {mode} perplexity {value:.2f} against float32's {base:.2f} ({change:+.0%}), {verdict}."


def claim_sentences(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The sentences for the rows `rounded` returned: memory per mode, then speed and quality of the
    smallest mode measured (4bit where it was measured)."""
    modes = [row["mode"] for row in rows if row["mode"] != "float32"]
    sentences = [memory_sentence(rows, mode) for mode in modes]
    if modes:
        smallest = modes[-1]
        sentences += [speed_sentence(rows, smallest), accuracy_sentence(rows, smallest)]
    return sentences


__all__ = [
    "COLUMNS",
    "Modes",
    "accuracy_sentence",
    "claim_sentences",
    "measure",
    "memory_sentence",
    "modes_for",
    "rounded",
    "speed_sentence",
]
