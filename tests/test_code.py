"""`--code`: the printed code runs as it is, in a fresh namespace, and gives what the magic gave."""

from __future__ import annotations

import contextlib
import io

import pytest

from tests.helpers import magics, run, shown_html, shown_text
from tests.test_pipe import assert_same


def printed_code(captured) -> str:
    """The code block a magic showed (its text/plain form starts with a comment line)."""
    for output in captured.outputs:
        text = output.data.get("text/plain", "")
        if text.startswith("# The same in plain transformers:"):
            assert "<pre" in output.data["text/html"] and "<script" not in output.data["text/html"]
            return text.split("\n", 1)[1]
    raise AssertionError("no code was shown")


def execute(code: str) -> dict:
    """Run `code` in a fresh namespace, as a student pasting it into a new notebook would."""
    namespace: dict = {"__name__": "__main__"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, "<--code>", "exec"), namespace)
    return namespace


def test_llm_load_code_loads_the_same_weights(shell, tiny_models):
    import torch

    result, captured = run(shell, f"%llm_load {tiny_models['llama']} --dtype float32 --as mine --code")
    assert result.success, result.error_in_exec
    code = printed_code(captured)
    assert str(tiny_models["llama"]) in code and "torch.float32" in code
    ours = magics(shell).registry.get("mine").model
    theirs = execute(code)["model"]
    assert theirs.dtype == ours.dtype == torch.float32
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_chat_code_gives_the_same_greedy_reply_over_two_turns(shell, tiny_models):
    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --dtype float32 --as mine")
    for message in ("What is a token?", "And a tokenizer?"):
        result, captured = run(shell, f"%%llm_chat --code --max-new-tokens 12 --no-stream\n{message}")
        assert result.success, result.error_in_exec
        code = printed_code(captured)
        assert "apply_chat_template" in code and "TextStreamer" in code and "do_sample=False" in code
        assert execute(code)["reply"] == shell.user_ns["_llm_reply"]
    assert "What is a token?" in code  # the second turn's code carries the conversation


def test_sampling_options_are_in_the_code(shell, tiny_models):
    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --dtype float32 --as mine")
    result, captured = run(
        shell, "%%llm_chat --code --max-new-tokens 6 --temperature 0.7 --top-p 0.9 --seed 3 --no-stream\nHi"
    )
    code = printed_code(captured)
    for fragment in ("do_sample=True", "temperature=0.7", "top_p=0.9", "torch.manual_seed(3)"):
        assert fragment in code
    assert execute(code)["reply"] == shell.user_ns["_llm_reply"]


def test_complete_code_gives_the_same_continuation(shell, tiny_models):
    shell.run_line_magic("llm_load", f"{tiny_models['gpt2']} --dtype float32 --as base")
    result, captured = run(shell, "%%llm_complete --code --max-new-tokens 10 --no-stream\nOnce upon a time")
    assert result.success, result.error_in_exec
    assert execute(printed_code(captured))["continuation"] == shell.user_ns["_llm_reply"]


def test_pipe_code_gives_the_same_labels_and_scores(shell, task_models):  # noqa: F811
    folder = task_models["sentiment"]
    result, captured = run(
        shell, f"%llm_pipe sentiment-analysis --model {folder} --dtype float32 --code I love LLMs!"
    )
    assert result.success, result.error_in_exec
    code = printed_code(captured)
    assert "pipeline('sentiment-analysis'" in code or "'sentiment-analysis'," in code
    assert_same(execute(code)["result"], shell.user_ns["_llm_pipe"])
    # The code comes first, the result below it.
    plain = shown_text(captured)
    assert plain.index("from transformers import") < plain.index("[text-classification")


def test_pipe_code_over_a_loaded_chat_model_hands_over_the_objects(shell, tiny_models):
    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --dtype float32 --as chat")
    result, captured = run(shell, "%llm_pipe text-generation --code --max-new-tokens 6 Once upon a time")
    assert result.success, result.error_in_exec
    code = printed_code(captured)
    assert "pipeline('text-generation', model=model, tokenizer=tokenizer)" in code
    assert execute(code)["result"] == shell.user_ns["_llm_pipe"]


def test_tokens_code_gives_the_same_ids_and_text_back(shell, tiny_models):
    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --tokenizer-only --as tok")
    result, captured = run(shell, '%tokens --code "Hello world, naïve 🙂"')
    assert result.success, result.error_in_exec
    code = printed_code(captured)
    assert "AutoTokenizer" in code and "import torch" not in code
    namespace = execute(code)
    tokenizer = magics(shell).registry.get("tok").tokenizer
    assert namespace["ids"] == tokenizer("Hello world, naïve 🙂")["input_ids"]
    assert namespace["text"] == "Hello world, naïve 🙂"


def test_tokens_code_goes_with_text_only(shell, tiny_models):
    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --tokenizer-only --as tok")
    result, _ = run(shell, "%tokens --code --chat")
    assert not result.success and "--code" in str(result.error_in_exec)


def test_quantized_load_code_has_the_chosen_compute_dtype():
    from llm_magics.code import load_code, pipeline_code
    from llm_magics.engines.pipeline import PipeTask, TaskName
    from llm_magics.engines.transformers.hardware import Hardware
    from llm_magics.engines.transformers.plan import plan_load
    from llm_magics.engines.transformers.source import ModelSource, SourceKind

    source = ModelSource(SourceKind.HUB, "m", hub_id="org/m")
    t4 = Hardware("cuda", cuda_capability=(7, 5), cuda_name="Tesla T4")
    plan = plan_load(source, quantization="4bit", hardware=t4)
    code = load_code(plan)
    assert "BitsAndBytesConfig(" in code and "bnb_4bit_compute_dtype=torch.float16" in code
    assert "model_id = 'org/m'" in code and "device_map='auto'" in code
    compile(code, "<code>", "exec")
    code = pipeline_code(PipeTask(TaskName.FILL_MASK), "fill-mask", plan, "a <mask>", {"top_k": 3})
    assert '{"quantization_config": quantization_config}' in code
    compile(code, "<code>", "exec")


def test_the_code_block_is_escaped_and_plain():
    from llm_magics.display.pipe import CodeBlock

    bundle = CodeBlock("x = '</pre><script>'")._repr_mimebundle_()
    assert "<script>" not in bundle["text/html"] and "&lt;script&gt;" in bundle["text/html"]
    assert "x = '</pre><script>'" in bundle["text/plain"]


@pytest.mark.slow
def test_bundled_gguf_code_runs_and_gives_the_same_reply(shell, bundled_gguf):
    result, captured = run(shell, "%llm_load --dtype float32 --code")
    assert result.success, result.error_in_exec
    load = printed_code(captured)
    assert f"gguf_file = {bundled_gguf.name!r}" in load
    result, captured = run(
        shell, "%%llm_chat --code --max-new-tokens 12 --no-stream\nWhat is the capital of France?"
    )
    assert result.success, result.error_in_exec
    assert execute(printed_code(captured))["reply"] == shell.user_ns["_llm_reply"]
    assert "<pre" in shown_html(captured)
