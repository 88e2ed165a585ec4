"""The sentences a notebook prints about the lesson's claims follow from its own numbers."""

from __future__ import annotations

import pytest

from llm_magics.engines.transformers.hardware import Hardware
from llm_magics.errors import InvalidOption
from llm_magics.lessons import claims

pytestmark = pytest.mark.torchfree


def row(mode: str, mb: float, speed: float, perplexity: float) -> dict:
    return {
        "mode": mode,
        "weights": mode,
        "footprint (MB)": mb,
        "tokens/s": speed,
        "perplexity": perplexity,
        "sample": "",
    }


# The CPU run the issue quotes: 4-bit the fastest, perplexity 13.5 against 10.1.
CPU_RUN = claims.rounded(
    [
        row("float32", 538.06, 25.21, 10.1),
        row("bfloat16", 269.03, 48.4, 10.12),
        row("4bit", 166.8, 61.7, 13.5),
    ]
)


def test_rows_are_rounded_as_shown_and_measured_against_float32():
    assert CPU_RUN[0]["footprint (MB)"] == 538.1 and CPU_RUN[0]["vs float32"] == 100
    assert [r["vs float32"] for r in CPU_RUN] == [100, 50, 31]
    assert list(CPU_RUN[0]) == list(claims.COLUMNS)


def test_the_sentences_say_where_each_claim_holds_here():
    memory_16, memory_4, speed, quality = claims.claim_sentences(CPU_RUN)
    assert memory_16 == "Memory: bfloat16 used 50% of float32's memory, the lesson's 50% holds."
    assert memory_4 == "Memory: 4bit used 31% of float32's memory, more than the lesson's ~25%: not met."
    assert speed.startswith("Speed: 4bit decoded 61.7 tokens/s against float32's 25.2 (245% of it)")
    assert "faster than 'similar or slightly faster' says" in speed and "fastest mode here was 4bit" in speed
    assert quality == (
        "Quality: 4bit perplexity 13.50 against float32's 10.10 (+34%), more than the lesson's 1-3% worse."
    )


@pytest.mark.parametrize(
    ("speed", "verdict"),
    [
        (10.0, "does not hold here"),
        (24.0, "'similar or slightly faster' holds here"),
        (30.0, "'similar or slightly faster' holds here"),
        (40.0, "faster than"),
    ],
)
def test_speed_verdict_follows_the_ratio(speed, verdict):
    rows = claims.rounded([row("float32", 100, 25.0, 10), row("4bit", 25, speed, 10.2)])
    assert verdict in claims.speed_sentence(rows)


@pytest.mark.parametrize(
    ("perplexity", "verdict"), [(10.05, "less than"), (10.2, "within"), (10.5, "more than")]
)
def test_quality_verdict_follows_the_change(perplexity, verdict):
    rows = claims.rounded([row("float32", 100, 25.0, 10.0), row("4bit", 25, 25, perplexity)])
    assert f"{verdict} the lesson's 1-3% worse" in claims.accuracy_sentence(rows)


def test_eight_bit_gets_no_invented_figure():
    rows = claims.rounded([row("float32", 100, 25.0, 10.0), row("8bit", 30, 20, 10)])
    assert claims.memory_sentence(rows, "8bit") == (
        "Memory: 8bit used 30% of float32's memory (the lesson gives no figure for it)."
    )


def test_without_a_float32_row_it_says_what_is_missing():
    with pytest.raises(InvalidOption, match="float32"):
        claims.rounded([row("4bit", 25, 25, 10)])


def test_modes_follow_the_hardware_and_bitsandbytes():
    t4 = Hardware("cuda", cuda_capability=(7, 5), cuda_name="Tesla T4")
    assert claims.modes_for(t4, bitsandbytes=True) == claims.Modes(
        ("float32", "float16", "8bit", "4bit"), None
    )
    cpu = claims.modes_for(Hardware("cpu"), bitsandbytes=False)
    assert cpu.modes == ("float32", "bfloat16")
    assert cpu.skipped == "Skipped 8bit and 4bit: bitsandbytes is not installed (pip install bitsandbytes)."
