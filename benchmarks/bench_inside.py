"""Inside the model on the bundled SmolLM2 (float32, CPU): a 64-token attention view (forward pass
with eager attention, then the grid and heatmap rendered) and a logit lens (goal: under a second
each). The load average is printed beside them: other work on the machine slows both."""

from __future__ import annotations

import os

from benchmarks.common import Section, timed


def run(runs: int = 3) -> Section:
    import llm_magics
    from llm_magics.display.attention import AttentionView
    from llm_magics.display.lens import LensView
    from llm_magics.inside.attention import attention
    from llm_magics.inside.lens import logit_lens

    engine = llm_magics.load(None, dtype="float32")
    text = " ".join(["word"] * 64)
    assert len(engine.tokenizer(text)["input_ids"]) == 64

    def attention_view() -> None:
        AttentionView(attention(engine, text))._repr_mimebundle_()

    def lens_view() -> None:
        LensView(logit_lens(engine, "The capital of France is"))._repr_mimebundle_()

    attention_view(), lens_view()  # warm up
    seen, lens = timed(attention_view, runs), timed(lens_view, runs)
    load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    section = Section(
        "Inside the model on SmolLM2-135M (float32, CPU)",
        ["view", "time", "load average (1 / 5 / 15 min)"],
    )
    section.rows = [
        ["%llm_attention, 64 tokens (30 layers × 9 heads)", seen.show(" s"), load],
        ["%llm_next --lens (31 rows)", lens.show(" s"), load],
    ]
    section.goals = [
        (f"attention under a second (median {seen.median:.2f} s)", seen.median < 1),
        (f"lens under a second (median {lens.median:.2f} s)", lens.median < 1),
    ]
    return section


if __name__ == "__main__":
    run().print()
