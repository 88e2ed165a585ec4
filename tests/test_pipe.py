"""%llm_pipe: every task on a tiny model of the right head, compared with `transformers.pipeline`
called directly on the same folder; the registry, reuse, rendering and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, magics, run, shown_html, shown_text


def reference(task: str, folder: Path, inputs, **options):
    """What plain transformers gives: `pipeline(task, model=folder)(inputs, **options)`, float32."""
    import torch
    from transformers import pipeline

    return pipeline(task, model=str(folder), dtype=torch.float32)(inputs, **options)


def assert_same(ours, theirs):
    """Equal structure and values; scores equal to float32 rounding."""
    if isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            assert_same(a, b)
    elif isinstance(theirs, dict):
        assert ours.keys() == theirs.keys()
        for key in theirs:
            assert_same(ours[key], theirs[key])
    elif isinstance(theirs, float) or type(theirs).__name__.startswith("float"):
        assert float(ours) == pytest.approx(float(theirs), abs=1e-5)
    else:
        assert ours == theirs


CASES = [
    # (task as typed, head, options on the line, pipeline call options, input)
    ("sentiment-analysis", "sentiment", "", {}, "I love learning about LLMs!"),
    ("text-classification", "sentiment", "--top-k 2", {"top_k": 2}, "This movie was terrible."),
    (
        "zero-shot-classification",
        "nli",
        '--labels "education, sports, politics"',
        {"candidate_labels": ["education", "sports", "politics"]},
        "I love learning about LLMs!",
    ),
    ("fill-mask", "mlm", "--top-k 3", {"top_k": 3}, "Paris is the [MASK] of France."),
    (
        "ner",
        "ner",
        "",
        {"aggregation_strategy": "simple"},
        "Ada Lovelace worked in London with Charles Babbage.",
    ),
]


@pytest.mark.parametrize("typed, head, flags, options, text", CASES, ids=[case[0] for case in CASES])
def test_each_task_gives_what_the_pipeline_gives(shell, task_models, typed, head, flags, options, text):
    folder = task_models[head]
    result, captured = run(shell, f"%llm_pipe {typed} --model {folder} --dtype float32 {flags} {text}")
    assert result.success, result.error_in_exec
    theirs = reference(typed, folder, text, **options)
    assert_same(shell.user_ns["_llm_pipe"], theirs)
    shown = shown_text(captured)
    html = shown_html(captured)
    items = theirs if isinstance(theirs, list) else [theirs]
    if typed == "zero-shot-classification":
        for label, score in zip(theirs["labels"], theirs["scores"], strict=True):
            assert f"{label}" in shown and f"{score:.4f}" in shown
    elif typed == "fill-mask":
        for item in items:
            assert item["token_str"].strip() in shown and f"{item['score']:.2%}" in shown
    elif typed == "ner":
        # Merged word pieces, highlighted where they are in the text.
        for entity in items:
            span = text[entity["start"] : entity["end"]]
            assert f"[{span}]{entity['entity_group']}" in shown
            assert "<mark" in html and span.split()[0] in html
    else:
        for item in items:
            assert item["label"] in shown and f"{item['score']:.4f}" in shown
    assert "width:" in html  # score bars


def test_lines_run_as_one_batch(shell, task_models):
    folder = task_models["sentiment"]
    shell.run_cell_magic(
        "llm_pipe",
        f"sentiment-analysis --model {folder} --dtype float32 --lines --out test_raw",
        "a good day\n\nthe plot made no sense\n",
    )
    theirs = reference("sentiment-analysis", folder, ["a good day", "the plot made no sense"])
    assert_same(shell.user_ns["_llm_pipe"], theirs)
    assert shell.user_ns["test_raw"] is shell.user_ns["_llm_pipe"]


def test_text_generation_on_a_folder_is_the_pipelines_greedy_text(shell, tiny_models):
    folder = tiny_models["gpt2"]
    result, captured = run(
        shell,
        f"%llm_pipe text-generation --model {folder} --dtype float32 --max-new-tokens 8 Once upon a time",
    )
    assert result.success, result.error_in_exec
    theirs = reference("text-generation", folder, "Once upon a time", max_new_tokens=8, do_sample=False)
    assert shell.user_ns["_llm_pipe"] == theirs
    assert theirs[0]["generated_text"] in shown_text(captured)
    engine = magics(shell).registry.get("tiny-gpt2")
    # A text-generation pipeline's model is a causal LM: it completes (and chats) too.
    from llm_magics.engines.base import Completes

    assert isinstance(engine, Completes)


def test_text_generation_reuses_the_loaded_chat_model(shell, tiny_models, monkeypatch):
    from llm_magics.engines import pipeline as tasks

    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --dtype float32 --as chat")
    registry = magics(shell).registry
    chat = registry.get("chat")
    seen = []
    real = tasks.make_pipeline

    def spy(task, model, tokenizer):
        seen.append(model)
        return real(task, model, tokenizer)

    monkeypatch.setattr(tasks, "make_pipeline", spy)
    for line in (
        "text-generation --max-new-tokens 4 Hello",
        "text-generation --model chat --max-new-tokens 4 Hello",
    ):
        result, _ = run(shell, f"%llm_pipe {line}")
        assert result.success, result.error_in_exec
    assert len(seen) == 2 and all(model is chat.model for model in seen)
    assert registry.names() == ["chat"]


def test_a_pipeline_is_listed_with_its_task_reused_and_unloaded(shell, task_models, monkeypatch):
    from llm_magics.engines.transformers.loading import load_weights
    from llm_magics.magics import pipe

    folder = task_models["sentiment"]
    loads = []
    real = load_weights
    monkeypatch.setattr(pipe, "load_weights", lambda *a, **k: loads.append(1) or real(*a, **k))
    for _ in range(2):
        result, _ = run(shell, f"%llm_pipe sentiment-analysis --model {folder} good")
        assert result.success, result.error_in_exec
    assert len(loads) == 1
    registry = magics(shell).registry
    engine = registry.get("tiny-sentiment")
    assert ("task", "text-classification") in engine.describe().details
    _, captured = run(shell, "%llm_list")
    assert "task: text-classification" in shown_text(captured)
    model = engine.model
    del engine
    import weakref

    watched = weakref.ref(model)
    del model
    _, captured = run(shell, "%llm_unload tiny-sentiment")
    assert "Unloaded tiny-sentiment" in shown_text(captured)
    assert watched() is None and len(registry) == 0


def test_a_pipeline_does_not_take_over_the_active_chat_model(shell, tiny_models, task_models):
    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --as chat")
    run(shell, f"%llm_pipe fill-mask --model {task_models['mlm']} the [MASK] day")
    assert magics(shell).registry.active_name == "chat"


def test_results_are_escaped(shell, task_models):
    result, captured = run(
        shell, f"%llm_pipe sentiment-analysis --model {task_models['sentiment']} <script>alert(1)</script>"
    )
    assert result.success
    html = shown_html(captured)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_render_of_generated_and_answers_from_raw_output():
    """The shapes the removed tasks return (question-answering, summarization), rendered."""
    from llm_magics.display.pipe import PipeResult
    from llm_magics.engines.pipeline import PipeTask, TaskName

    context = "Ada Lovelace worked in London."
    qa = PipeResult(
        PipeTask(TaskName.QUESTION_ANSWERING),
        ["Where?"],
        [{"score": 0.9, "start": 23, "end": 29, "answer": "London"}],
        "m",
        context=context,
    )
    bundle = qa._repr_mimebundle_()
    assert "[London]0.90" in bundle["text/plain"] and "<mark" in bundle["text/html"]
    summary = PipeResult(
        PipeTask(TaskName.SUMMARIZATION), ["long <b>text</b>"], [[{"summary_text": "short"}]], "m"
    )
    bundle = summary._repr_mimebundle_()
    assert "short" in bundle["text/plain"] and "&lt;b&gt;" in bundle["text/html"]


# -- errors: one line, nothing changed ------------------------------------------------------------


def _unchanged(shell, before):
    assert magics(shell).registry.names() == before
    assert "_llm_pipe" not in shell.user_ns


def test_unknown_task_lists_the_supported_ones(shell):
    result, captured = run(shell, "%llm_pipe sentiment-analysys hello")
    assert_one_line_error(result, captured, "InvalidOption", "sentiment-analysis")
    _unchanged(shell, [])


@pytest.mark.parametrize(
    "typed, canonical",
    [
        ("sentiment-analysis", "text-classification"),
        (" NER ", "token-classification"),
        ("Translation_en_to_fr", "translation_en_to_fr"),
        ("question-answering", "question-answering"),
    ],
)
def test_a_task_as_typed_becomes_the_name_pipeline_is_given(typed, canonical):
    from llm_magics.engines.pipeline import resolve_task, typed_names

    task = resolve_task(typed)
    assert str(task) == canonical and f"{task.name}" == canonical.split("_")[0]
    # Every name the error message offers is one that resolves.
    assert all(str(resolve_task(name).name) for name in typed_names())


@pytest.mark.parametrize("typed", ["translation_en_fr", "translation__to_fr", "image-classification"])
def test_a_malformed_or_non_text_task_is_one_line(shell, typed):
    result, captured = run(shell, f"%llm_pipe {typed} hello")
    assert_one_line_error(result, captured, "InvalidOption", typed)
    _unchanged(shell, [])


def test_a_causal_lm_for_fill_mask_is_one_line(shell, tiny_models):
    result, captured = run(shell, f"%llm_pipe fill-mask --model {tiny_models['llama']} the [MASK] day")
    assert_one_line_error(result, captured, "ModelLoadFailed", "AutoModelForMaskedLM")
    _unchanged(shell, [])


def test_a_loaded_chat_model_for_fill_mask_is_one_line(shell, tiny_models):
    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --as chat")
    result, captured = run(shell, "%llm_pipe fill-mask --model chat the [MASK] day")
    assert_one_line_error(result, captured, "ModelLoadFailed", "AutoModelForMaskedLM")
    _unchanged(shell, ["chat"])


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("zero-shot-classification --model M hello", "needs --labels"),
        ("fill-mask --model M --context 'x' the [MASK]", "--context is for question-answering"),
        ("fill-mask --model M --max-new-tokens 3 the [MASK]", "for generating tasks"),
        ("fill-mask --model M --out print the [MASK]", "--out print"),
        ("fill-mask --model M", "No input"),
    ],
)
def test_bad_options_are_one_line(shell, task_models, line, fragment):
    result, captured = run(shell, "%llm_pipe " + line.replace(" M ", f" {task_models['mlm']} ", 1))
    assert_one_line_error(result, captured, "InvalidOption", fragment)
    _unchanged(shell, [])


def test_input_the_pipeline_refuses_is_one_line_and_registers_nothing(shell, task_models):
    result, captured = run(shell, f"%llm_pipe fill-mask --model {task_models['mlm']} no mask here")
    assert not result.success
    assert type(result.error_in_exec).__name__ == "InvalidOption"
    assert "[MASK]" in str(result.error_in_exec)
    _unchanged(shell, [])


def test_a_default_model_off_the_hub_names_it_and_says_it_needs_the_hub_once(shell):
    from llm_magics.engines.pipeline import PipeTask, TaskName, default_model

    result, captured = run(shell, "%llm_pipe sentiment-analysis I love learning about LLMs!")
    hub_id, _ = default_model(PipeTask(TaskName.TEXT_CLASSIFICATION))
    assert_one_line_error(result, captured, "HubUnreachable", hub_id)
    assert "needs the hub once" in str(result.error_in_exec)
    _unchanged(shell, [])


def test_a_pipeline_engine_keeps_the_protocols_it_has(task_models):
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from llm_magics.engines.base import Chats, Completes, Engine, HoldsModel, Tokenizes
    from llm_magics.engines.pipeline import PipelineEngine, TaskName
    from llm_magics.values import EngineInfo, EngineKind

    folder = task_models["mlm"]
    model = AutoModelForMaskedLM.from_pretrained(folder, dtype=torch.float32)
    info = EngineInfo(name="m", source=str(folder), kind=EngineKind.PIPELINE, footprint_bytes=123)
    engine = PipelineEngine(info, TaskName.FILL_MASK, model, AutoTokenizer.from_pretrained(folder))
    assert isinstance(engine, Engine) and isinstance(engine, HoldsModel) and isinstance(engine, Tokenizes)
    assert not isinstance(engine, Chats) and not isinstance(engine, Completes)
    assert engine.pipeline.model is model
    assert_same(
        engine.run("the [MASK] day", top_k=2), reference("fill-mask", folder, "the [MASK] day", top_k=2)
    )
    assert engine.close() == 123 and engine.model is None


def test_4bit_on_a_model_the_cpu_kernel_cannot_run_is_one_line(shell, task_models):
    """bitsandbytes' CPU 4-bit kernel (CPUs with AVX512-BF16) needs input sizes in blocks of 64;
    the tiny model's layers take 32. Where the kernel is not used, the pipeline simply runs."""
    pytest.importorskip("bitsandbytes")
    from bitsandbytes.functional import has_avx512bf16

    line = f"%llm_pipe sentiment-analysis --model {task_models['sentiment']} --quant 4bit I love it"
    result, captured = run(shell, line)
    if not has_avx512bf16():
        assert result.success, result.error_in_exec
        return
    assert_one_line_error(result, captured, "QuantizationUnavailable", "multiple of 64")
    _unchanged(shell, [])
