"""Summarization, translation and question-answering, which transformers 5 removed: run by
`removed_tasks` on seq2seq, extractive and chat models, each compared with what plain
transformers gives for the same model (the steps the removed pipelines took, written out here
independently, and transformers' own question-answering pipeline where it still exists)."""

from __future__ import annotations

import pytest

from tests.helpers import assert_one_line_error, magics, run, shown_html, shown_text
from tests.pipe_models import T5_TASK_PARAMS
from tests.test_code import execute, printed_code
from tests.test_pipe import assert_same

TEXT = "The weather is nice today and the match ended in a draw."
CONTEXT = "Ada Lovelace worked in London with Charles Babbage. Paris is the capital of France."


def seq2seq_reference(folder, text: str, params: dict, key: str, **overrides):
    """Tokenize with the task's prefix, generate with its settings, decode: what
    SummarizationPipeline and TranslationPipeline did."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, dtype=torch.float32)
    settings = {name: value for name, value in params.items() if name != "prefix"}
    settings.update(overrides)
    if "max_new_tokens" in overrides:
        settings.pop("max_length", None)
    inputs = tokenizer(params["prefix"] + text, return_tensors="pt", truncation=True)
    output = model.generate(**inputs, do_sample=False, **settings)
    return [{key: tokenizer.decode(output[0], skip_special_tokens=True, clean_up_tokenization_spaces=True)}]


def brute_force_answer(folder, question: str, context: str, top_k: int = 1, max_answer_len: int = 15):
    """Every span of the context up to `max_answer_len` tokens, scored p(start) × p(end) with the
    softmax over the context tokens and [CLS]; the best 2k + 10 widened to whole words, answers with
    the same text added up, the best k (one window: the context is short)."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForQuestionAnswering.from_pretrained(folder, dtype=torch.float32)
    encoded = tokenizer(question, context, return_offsets_mapping=True)
    with torch.no_grad():
        output = model(input_ids=torch.tensor([encoded["input_ids"]]))
    sequence = encoded.sequence_ids()
    context_tokens = [i for i, s in enumerate(sequence) if s == 1]
    kept = context_tokens + [0]
    start = torch.softmax(output.start_logits[0, kept].double(), -1)[:-1]
    end = torch.softmax(output.end_logits[0, kept].double(), -1)[:-1]
    spans = []
    for a, s in enumerate(context_tokens):
        for b, e in enumerate(context_tokens):
            if s <= e < s + max_answer_len:
                spans.append((float(start[a] * end[b]), s, e))
    spans.sort(reverse=True)
    answers: list[dict] = []
    for score, s, e in spans[: top_k * 2 + 10]:
        first = encoded.word_to_chars(encoded.token_to_word(s), sequence_index=1)[0]
        last = encoded.word_to_chars(encoded.token_to_word(e), sequence_index=1)[1]
        text = context[first:last]
        same = [answer for answer in answers if answer["answer"].lower() == text.lower()]
        if same:
            same[0]["score"] += score
        else:
            answers.append({"score": score, "start": first, "end": last, "answer": text})
    answers.sort(key=lambda answer: answer["score"], reverse=True)
    return answers[0] if top_k == 1 else answers[:top_k]


# -- seq2seq: summarization and translation ----------------------------------------------------


def test_summarization_on_a_seq2seq_model_is_prefix_generate_decode(shell, task_models):
    folder = task_models["seq2seq"]
    result, captured = run(shell, f"%llm_pipe summarization --model {folder} --dtype float32 {TEXT}")
    assert result.success, result.error_in_exec
    theirs = seq2seq_reference(folder, TEXT, T5_TASK_PARAMS["summarization"], "summary_text")
    assert shell.user_ns["_llm_pipe"] == theirs
    shown = shown_text(captured)
    assert f"{TEXT}\n→ {theirs[0]['summary_text']}" in shown
    assert "[summarization · tiny-seq2seq]" in shown


def test_translation_reuses_the_model_loaded_for_summarization(shell, task_models):
    folder = task_models["seq2seq"]
    shell.run_line_magic("llm_pipe", f"summarization --model {folder} --dtype float32 {TEXT}")
    result, _ = run(
        shell, f"%llm_pipe translation_en_to_fr --model {folder} --dtype float32 --max-new-tokens 6 I love it"
    )
    assert result.success, result.error_in_exec
    theirs = seq2seq_reference(
        folder, "I love it", T5_TASK_PARAMS["translation_en_to_fr"], "translation_text", max_new_tokens=6
    )
    assert shell.user_ns["_llm_pipe"] == theirs
    assert magics(shell).registry.names() == ["tiny-seq2seq"]  # one copy, for both tasks


def test_a_language_pair_the_model_does_not_know_is_one_line(shell, task_models):
    folder = task_models["seq2seq"]
    result, captured = run(shell, f"%llm_pipe translation_en_to_ja --model {folder} I love it")
    assert_one_line_error(result, captured, "InvalidOption", "translation_en_to_de, translation_en_to_fr")
    assert magics(shell).registry.names() == [] and "_llm_pipe" not in shell.user_ns


def test_lines_give_one_summary_per_line(shell, task_models):
    folder = task_models["seq2seq"]
    shell.run_cell_magic(
        "llm_pipe", f"summarization --model {folder} --dtype float32 --lines", "a good day\nthe plot\n"
    )
    params = T5_TASK_PARAMS["summarization"]
    theirs = [
        seq2seq_reference(folder, text, params, "summary_text")[0] for text in ("a good day", "the plot")
    ]
    assert shell.user_ns["_llm_pipe"] == theirs


# -- extractive question answering -------------------------------------------------------------


def test_an_extractive_answer_is_the_best_span_widened_to_words(shell, task_models):
    folder = task_models["qa"]
    # The cell form: IPython reads a line ending in "?" as a help request.
    result, captured = run(
        shell,
        f"%%llm_pipe question-answering --model {folder} --dtype float32 --context '{CONTEXT}'\nWhere did Ada work?",
    )
    assert result.success, result.error_in_exec
    ours = shell.user_ns["_llm_pipe"]
    theirs = brute_force_answer(folder, "Where did Ada work?", CONTEXT)
    assert_same(ours, theirs)
    assert CONTEXT[ours["start"] : ours["end"]] == ours["answer"]
    assert f"[{ours['answer']}]{ours['score']:.2f}" in shown_text(captured)
    assert "<mark" in shown_html(captured)


def test_extractive_answers_equal_transformers_own_pipeline_where_it_still_exists(task_models):
    """transformers before 5.3 still has QuestionAnsweringPipeline (the Colab 5.0 leg runs this)."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipelines

    from llm_magics.engines.pipeline.removed_tasks import ExtractiveAnswers

    if "question-answering" not in pipelines.SUPPORTED_TASKS:
        pytest.skip("this transformers has no question-answering pipeline to compare with")
    folder = task_models["qa"]
    model = AutoModelForQuestionAnswering.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    theirs = pipelines.pipeline("question-answering", model=model, tokenizer=tokenizer)
    ours = ExtractiveAnswers(model, tokenizer)
    long_context = " ".join([CONTEXT] * 40)  # several windows
    for question, context, top_k in (
        ("Where?", CONTEXT, 1),
        ("Who?", CONTEXT, 3),
        ("Where?", long_context, 2),
    ):
        assert_same(
            ours(question, context, top_k=top_k), theirs(question=question, context=context, top_k=top_k)
        )


def test_top_k_answers_and_a_long_context_in_windows(task_models):
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from llm_magics.engines.pipeline.removed_tasks import ExtractiveAnswers

    folder = task_models["qa"]
    qa = ExtractiveAnswers(
        AutoModelForQuestionAnswering.from_pretrained(folder, dtype=torch.float32),
        AutoTokenizer.from_pretrained(folder),
    )
    answers = qa("Where did Ada work?", CONTEXT, top_k=3)
    assert len(answers) == 3
    assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)
    assert_same(answers, brute_force_answer(folder, "Where did Ada work?", CONTEXT, top_k=3))
    long_context = " ".join([CONTEXT] * 40)
    found = qa("Where did Ada work?", long_context)
    assert long_context[found["start"] : found["end"]] == found["answer"]


def test_generation_flags_on_an_extractive_model_are_one_line(shell, task_models):
    line = f"question-answering --model {task_models['qa']} --context 'x y' --max-new-tokens 5 Who"
    result, captured = run(shell, f"%llm_pipe {line}")
    assert_one_line_error(result, captured, "InvalidOption", "an extractive model does not generate")
    assert magics(shell).registry.names() == []


# -- chat models, as transformers' migration guide advises ---------------------------------------


def chat_reference(folder, prompt: str, max_new_tokens: int) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def test_summarization_runs_on_the_loaded_chat_model_without_a_copy(shell, tiny_models):
    from llm_magics.engines.pipeline import TaskName
    from llm_magics.engines.pipeline.removed_tasks import chat_prompt

    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --dtype float32 --as chat")
    result, _ = run(shell, f"%llm_pipe summarization --max-new-tokens 8 {TEXT}")
    assert result.success, result.error_in_exec
    prompt = chat_prompt(TaskName.SUMMARIZATION, TEXT)[0]["content"]
    assert shell.user_ns["_llm_pipe"] == [{"summary_text": chat_reference(tiny_models["llama"], prompt, 8)}]
    assert magics(shell).registry.names() == ["chat"]


def test_translation_on_a_chat_model_names_the_languages(shell, tiny_models):
    from llm_magics.engines.pipeline import TaskName
    from llm_magics.engines.pipeline.removed_tasks import chat_prompt

    folder = tiny_models["llama"]
    result, _ = run(
        shell, f"%llm_pipe translation_en_to_fr --model {folder} --dtype float32 --max-new-tokens 6 Hello"
    )
    assert result.success, result.error_in_exec
    prompt = chat_prompt(TaskName.TRANSLATION, "Hello", languages=("en", "fr"))[0]["content"]
    assert "from English to French" in prompt
    assert shell.user_ns["_llm_pipe"] == [{"translation_text": chat_reference(folder, prompt, 6)}]
    # Loaded for the task, it is a chat model too.
    assert magics(shell).registry.get("tiny-llama").describe().details[-1] == ("task", "translation")


def test_a_chat_models_answer_has_no_score_and_is_found_in_the_context(shell, tiny_models):
    from llm_magics.engines.pipeline.removed_tasks import located_answer

    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --dtype float32 --as chat")
    result, captured = run(
        shell, f"%%llm_pipe question-answering --max-new-tokens 5 --context '{CONTEXT}'\nWhere?"
    )
    assert result.success, result.error_in_exec
    answer = shell.user_ns["_llm_pipe"]
    assert answer["score"] is None and answer == located_answer(answer["answer"], CONTEXT)
    assert located_answer("london", CONTEXT) == {"score": None, "start": 23, "end": 29, "answer": "london"}
    assert located_answer("Rome", CONTEXT)["start"] is None
    assert located_answer("A: London", CONTEXT)["answer"] == "London"
    assert f"A: {answer['answer']}" in shown_text(captured)
    from llm_magics.display.pipe import PipeResult
    from llm_magics.engines.pipeline import PipeTask, TaskName

    unscored = located_answer("A: London", CONTEXT)
    html = PipeResult(
        PipeTask(TaskName.QUESTION_ANSWERING), ["Where?"], [unscored], "m", context=CONTEXT
    )._repr_mimebundle_()
    assert "<mark" in html["text/html"] and "<sup" not in html["text/html"]  # no score: no label
    assert "[London]" in html["text/plain"]


def test_a_causal_lm_without_a_chat_template_is_one_line(shell, tiny_models):
    result, captured = run(shell, f"%llm_pipe summarization --model {tiny_models['gpt2']} {TEXT}")
    assert_one_line_error(result, captured, "InvalidOption", "needs a chat model")
    assert magics(shell).registry.names() == [] and "_llm_pipe" not in shell.user_ns


def test_translation_on_a_chat_model_without_languages_is_one_line(shell, tiny_models):
    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --as chat")
    result, captured = run(shell, "%llm_pipe translation Hello")
    assert_one_line_error(result, captured, "InvalidOption", "translation_en_to_fr")


# -- defaults, errors, --code ------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, model",
    [
        ("summarization some long text", "sshleifer/distilbart-cnn-12-6"),
        ("translation_en_to_de Hello", "google-t5/t5-base"),
        (
            "question-answering --context 'Ada worked in London.' Where",
            "distilbert-base-cased-distilled-squad",
        ),
    ],
)
def test_with_no_model_and_no_chat_model_the_old_default_needs_the_hub(shell, line, model):
    result, captured = run(shell, f"%llm_pipe {line}")
    assert_one_line_error(result, captured, "HubUnreachable", model)
    assert "load a chat model first" in str(result.error_in_exec)
    assert magics(shell).registry.names() == []


def test_translation_with_no_default_for_the_pair_is_one_line(shell):
    result, captured = run(shell, "%llm_pipe translation_en_to_ja Hello")
    assert_one_line_error(result, captured, "InvalidOption", "translation_en_to_fr")


def test_a_seq2seq_model_for_question_answering_is_one_line(shell, task_models):
    result, captured = run(
        shell, f"%llm_pipe question-answering --model {task_models['seq2seq']} --context 'a b' Who"
    )
    assert_one_line_error(result, captured, "InvalidOption", "not a seq2seq one")
    assert magics(shell).registry.names() == []


@pytest.mark.parametrize(
    "line",
    [
        "summarization --model {seq2seq} --dtype float32 --code " + TEXT,
        "translation_en_to_de --model {seq2seq} --dtype float32 --max-new-tokens 5 --code I love it",
        "question-answering --model {qa} --dtype float32 --top-k 2 --context '" + CONTEXT + "' --code Who",
    ],
    ids=["summarization", "translation", "question-answering"],
)
def test_the_code_for_a_removed_task_runs_and_gives_the_same(shell, task_models, line):
    result, captured = run(shell, "%llm_pipe " + line.format(**task_models))
    assert result.success, result.error_in_exec
    code = printed_code(captured)
    assert "pipeline(" not in code.replace("removed pipeline(", "")
    assert_same(execute(code)["result"], shell.user_ns["_llm_pipe"])


def test_the_code_for_a_removed_task_on_a_chat_model_runs_and_gives_the_same(shell, tiny_models):
    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --dtype float32 --as chat")
    for line in (
        f"summarization --max-new-tokens 6 --code {TEXT}",
        f"question-answering --max-new-tokens 4 --context '{CONTEXT}' --code Who",
    ):
        result, captured = run(shell, "%llm_pipe " + line)
        assert result.success, result.error_in_exec
        code = printed_code(captured)
        assert "apply_chat_template" in code
        assert execute(code)["result"] == shell.user_ns["_llm_pipe"]


def test_a_model_loaded_for_another_head_is_refused_for_a_removed_task(shell, task_models):
    shell.run_line_magic("llm_pipe", f"fill-mask --model {task_models['mlm']} --as masked the [MASK] day")
    result, captured = run(shell, "%llm_pipe summarization --model masked some text")
    assert_one_line_error(result, captured, "ModelLoadFailed", "seq2seq, question-answering or chat model")
    assert magics(shell).registry.names() == ["masked"]
