"""The Pipeline API tasks transformers 5 removed, run the way the removed pipelines ran them.

transformers 5.0 deleted the summarization and translation pipelines, and 5.3 the question-answering
one; its migration guide says to prompt a chat model instead. Lessons and course notebooks still
teach all three, so `%llm_pipe` keeps them, on three kinds of model:

- a seq2seq model (T5, BART, Marian: `config.is_encoder_decoder`) summarizes or translates as
  `SummarizationPipeline` and `TranslationPipeline` did: the task's prefix and generation settings
  from `config.task_specific_params` ("summarize: ", "translate English to French: ", beams and
  lengths), then `generate` and `decode`;
- an extractive question-answering model (`…ForQuestionAnswering`) gives the span
  `QuestionAnsweringPipeline` gave (its algorithm as of transformers 5.0: windows of 384 tokens
  with a stride of 128, start and end probabilities over each window's context tokens, the best
  2k + 10 spans of at most 15 tokens, widened to whole words, equal answers added up, the best k);
- a chat model does any of the three from a prompt through its chat template, as the migration
  guide advises.

Each runner is called like the pipeline it stands in for and returns what that pipeline returned
(`[{"summary_text": …}]`, `[{"translation_text": …}]`, `{"score", "start", "end", "answer"}`), so
`_llm_pipe` holds what a lesson written for transformers 4 prints. A chat model's answer has no
probability: its `score` is None.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ...errors import InvalidOption
from ...prompts import encode_messages, has_chat_template
from .names import TaskName


class Runner(str, Enum):
    """How a removed task runs on the model it was given."""

    SEQ2SEQ = "seq2seq"
    EXTRACTIVE = "extractive"
    CHAT = "chat"


@dataclass(frozen=True)
class RemovedTask:
    """A task transformers removed: its output key, and the default model `pipeline(task)` picked
    in transformers 4 (hub id, revision)."""

    name: TaskName
    output_key: str
    default: tuple[str, str]


REMOVED_TASKS = {
    task.name: task
    for task in (
        RemovedTask(TaskName.SUMMARIZATION, "summary_text", ("sshleifer/distilbart-cnn-12-6", "a4f8f3e")),
        RemovedTask(TaskName.TRANSLATION, "translation_text", ("google-t5/t5-base", "a9723ea")),
        RemovedTask(
            TaskName.QUESTION_ANSWERING,
            "answer",
            ("distilbert/distilbert-base-cased-distilled-squad", "564e9b5"),
        ),
    )
}
#: transformers 4 had a default translation model only for these language pairs (T5's).
DEFAULT_TRANSLATION_PAIRS = (("en", "fr"), ("en", "de"), ("en", "ro"))

#: Language codes a chat prompt spells out (any other code is passed as it is).
LANGUAGES = {
    "ar": "Arabic", "de": "German", "el": "Greek", "en": "English", "es": "Spanish", "fi": "Finnish",
    "fr": "French", "hi": "Hindi", "it": "Italian", "ja": "Japanese", "ko": "Korean", "nl": "Dutch",
    "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sv": "Swedish",
    "tr": "Turkish", "uk": "Ukrainian", "zh": "Chinese",
}  # fmt: skip

#: Generation settings a model's `task_specific_params` may carry (the rest, like `prefix`, are not
#: `generate` arguments).
_GENERATION_KEYS = (
    "early_stopping", "length_penalty", "max_length", "min_length", "no_repeat_ngram_size", "num_beams",
)  # fmt: skip


def default_model(task: TaskName, languages: tuple[str, str] | None) -> tuple[str, str]:
    """The model transformers 4's `pipeline(task)` picked, or one line when it had none."""
    if task is TaskName.TRANSLATION and languages not in DEFAULT_TRANSLATION_PAIRS:
        pairs = ", ".join(f"translation_{a}_to_{b}" for a, b in DEFAULT_TRANSLATION_PAIRS)
        raise InvalidOption(
            f"translation has a default model only for {pairs}: pass --model (a translation model or "
            "a chat model), or load a chat model first."
        )
    return REMOVED_TASKS[task].default


def runner_for(config: Any) -> Runner:
    """Which runner a model with this config gets."""
    if getattr(config, "is_encoder_decoder", False):
        return Runner.SEQ2SEQ
    if any(name.endswith("ForQuestionAnswering") for name in getattr(config, "architectures", None) or ()):
        return Runner.EXTRACTIVE
    return Runner.CHAT


def _check_fits(task: TaskName, runner: Runner) -> None:
    """One line when a model of this kind cannot do `task`."""
    if runner is Runner.SEQ2SEQ and task is TaskName.QUESTION_ANSWERING:
        raise InvalidOption(
            "question-answering takes an extractive model (…ForQuestionAnswering) or a chat model, "
            "not a seq2seq one."
        )
    if runner is Runner.EXTRACTIVE and task is not TaskName.QUESTION_ANSWERING:
        raise InvalidOption(f"A question-answering model cannot do {task}: pass a seq2seq or a chat model.")


def head_class(task: TaskName, config: Any) -> Any:
    """The auto class to load for `task` on a model with this config, or one line if it cannot do it."""
    import transformers

    runner = runner_for(config)
    _check_fits(task, runner)
    return {
        Runner.SEQ2SEQ: transformers.AutoModelForSeq2SeqLM,
        Runner.EXTRACTIVE: transformers.AutoModelForQuestionAnswering,
        Runner.CHAT: transformers.AutoModelForCausalLM,
    }[runner]


def make_runner(task: TaskName, model: Any, tokenizer: Any) -> Seq2SeqTask | ExtractiveAnswers | ChatTask:
    runner = runner_for(model.config)
    _check_fits(task, runner)
    if runner is Runner.SEQ2SEQ:
        return Seq2SeqTask(task, model, tokenizer)
    if runner is Runner.EXTRACTIVE:
        return ExtractiveAnswers(model, tokenizer)
    return ChatTask(task, model, tokenizer)


def seq2seq_settings(
    config: Any, task: TaskName, languages: tuple[str, str] | None
) -> tuple[str, dict[str, Any]]:
    """The prefix and generation settings a seq2seq model carries for the task (T5's
    `task_specific_params["translation_en_to_fr"]`, BART-CNN's beams and lengths)."""
    params = getattr(config, "task_specific_params", None) or {}
    key = f"translation_{languages[0]}_to_{languages[1]}" if languages else task.value
    found = dict(params.get(key) or {})
    if task is TaskName.TRANSLATION and not found and any(name.startswith("translation_") for name in params):
        known = ", ".join(sorted(name for name in params if name.startswith("translation_")))
        raise InvalidOption(f"This model translates only {known}: write the task as one of them.")
    prefix = found.get("prefix") or getattr(config, "prefix", None) or ""
    return prefix, {name: found[name] for name in _GENERATION_KEYS if name in found}


def seq2seq_generation(
    config: Any, task: TaskName, languages: tuple[str, str] | None, options: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The prefix and the `generate` keyword arguments: the model's own settings for the task,
    under the options given (ours win)."""
    prefix, settings = seq2seq_settings(config, task, languages)
    kwargs = {**settings, **options}
    if "max_new_tokens" in options:
        kwargs.pop("max_length", None)  # transformers warns when both are set; the option wins
    return prefix, kwargs


def _texts(inputs: str | Sequence[str]) -> list[str]:
    return [inputs] if isinstance(inputs, str) else list(inputs)


def _one_or_many(inputs: str | Sequence[str], results: list[Any]) -> Any:
    """A str gives `[result]`, a list gives one result per input (Text2TextGenerationPipeline's shape)."""
    return [results[0]] if isinstance(inputs, str) else results


class Seq2SeqTask:
    """Summarization or translation on a seq2seq model, as transformers 4's pipelines ran them."""

    def __init__(self, task: TaskName, model: Any, tokenizer: Any) -> None:
        self.task, self.model, self.tokenizer = task, model, tokenizer

    def __call__(
        self,
        inputs: str | Sequence[str],
        src_lang: str | None = None,
        tgt_lang: str | None = None,
        **options: Any,
    ) -> Any:
        languages = (src_lang, tgt_lang) if src_lang and tgt_lang else None
        prefix, kwargs = seq2seq_generation(self.model.config, self.task, languages, options)
        key = REMOVED_TASKS[self.task].output_key
        results = []
        for text in _texts(inputs):
            encoded = self.tokenizer(prefix + text, return_tensors="pt", truncation=True).to(
                self.model.device
            )
            output = self.model.generate(**encoded, **kwargs)
            produced = self.tokenizer.decode(
                output[0], skip_special_tokens=True, clean_up_tokenization_spaces=True
            )
            results.append({key: produced})
        return _one_or_many(inputs, results)


class ExtractiveAnswers:
    """Extractive question answering, transformers 5.0's `QuestionAnsweringPipeline` for fast
    tokenizers with the question first (right padding, what question-answering models use)."""

    task = TaskName.QUESTION_ANSWERING

    def __init__(self, model: Any, tokenizer: Any) -> None:
        if not tokenizer.is_fast:
            raise InvalidOption(
                "question-answering needs a fast tokenizer (tokenizer.json) for the answer's offsets."
            )
        self.model, self.tokenizer = model, tokenizer

    def __call__(
        self,
        question: str | Sequence[str],
        context: str,
        top_k: int = 1,
        max_answer_len: int = 15,
        max_seq_len: int = 384,
        doc_stride: int = 128,
    ) -> Any:
        answers = [
            self._answer(q, context, top_k, max_answer_len, max_seq_len, doc_stride) for q in _texts(question)
        ]
        return answers[0] if isinstance(question, str) else answers

    def _answer(
        self, question: str, context: str, top_k: int, max_answer_len: int, max_seq_len: int, doc_stride: int
    ) -> Any:
        import torch

        max_seq_len = min(self.tokenizer.model_max_length, max_seq_len)
        encoded = self.tokenizer(
            question,
            context,
            truncation="only_second",
            max_length=max_seq_len,
            stride=min(doc_stride, max_seq_len // 2),
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        found: list[dict[str, Any]] = []
        for window in range(len(encoded["input_ids"])):
            inputs = {
                name: torch.tensor([encoded[name][window]], device=self.model.device)
                for name in self.tokenizer.model_input_names
                if name in encoded
            }
            with torch.inference_mode():
                output = self.model(**inputs)
            # Answers may start and end only on context tokens; the [CLS] token stays in the softmax
            # (models use it for "no answer") but cannot be the answer (the pipeline's "Mask CLS").
            allowed = torch.tensor([sequence == 1 for sequence in encoded.sequence_ids(window)])
            ids = torch.tensor(encoded["input_ids"][window])
            if self.tokenizer.cls_token_id is not None:
                in_softmax = allowed | (ids == self.tokenizer.cls_token_id)
            else:
                in_softmax = allowed
            start = _probabilities(output.start_logits[0], in_softmax)
            end = _probabilities(output.end_logits[0], in_softmax)
            start[0] = end[0] = 0.0
            # More candidates than asked for: widened to words, several spans become one answer.
            for s, e, score in _best_spans(start, end, allowed, top_k * 2 + 10, max_answer_len):
                first, last = _word_bounds(encoded[window], s, e)
                text = context[first:last]
                same = next((a for a in found if a["answer"].lower() == text.lower()), None)
                if same is not None:
                    same["score"] += score
                else:
                    found.append({"score": score, "start": first, "end": last, "answer": text})
        found.sort(key=lambda answer: answer["score"], reverse=True)
        found = found[:top_k]
        return found[0] if len(found) == 1 else found


def _probabilities(logits: Any, in_softmax: Any) -> Any:
    """Softmax over the tokens in `in_softmax` (the others at -10000, as the pipeline did), float64."""
    import torch

    masked = torch.where(
        in_softmax, logits.detach().double().cpu(), torch.tensor(-10000.0, dtype=torch.float64)
    )
    return torch.softmax(masked, dim=-1)


def _best_spans(
    start: Any, end: Any, allowed: Any, top_k: int, max_answer_len: int
) -> list[tuple[int, int, float]]:
    """The top spans by start × end probability, end ≥ start, at most `max_answer_len` tokens, both
    ends on allowed tokens (the pipeline's `decode_spans`: candidates outside are dropped, not
    replaced)."""
    import torch

    scores = torch.outer(start, end).triu().tril(max_answer_len - 1).flatten()
    count = min(top_k, scores.numel())
    best = torch.topk(scores, count).indices.tolist()
    width = end.numel()
    spans = []
    for index in best:
        s, e = divmod(index, width)
        if allowed[s] and allowed[e]:
            spans.append((s, e, float(scores[index])))
    return spans


def _word_bounds(encoding: Any, first_token: int, last_token: int) -> tuple[int, int]:
    """Character offsets in the context, widened to whole words (the pipeline's `align_to_words`)."""
    try:
        first = encoding.word_to_chars(encoding.token_to_word(first_token), sequence_index=1)[0]
        last = encoding.word_to_chars(encoding.token_to_word(last_token), sequence_index=1)[1]
    except Exception:  # tokenizers without words: keep the token offsets, as the pipeline did
        first, last = encoding.offsets[first_token][0], encoding.offsets[last_token][1]
    return first, last


class ChatTask:
    """Any of the three on a chat model: one prompt per input through the chat template, greedy
    unless sampling was asked for (what transformers' migration guide advises)."""

    def __init__(self, task: TaskName, model: Any, tokenizer: Any) -> None:
        if not has_chat_template(tokenizer):
            raise InvalidOption(
                f"{task} on a causal LM needs a chat model (one with a chat template): load an instruct "
                "model, or pass a seq2seq or question-answering model with --model."
            )
        self.task, self.model, self.tokenizer = task, model, tokenizer

    def __call__(
        self,
        inputs: str | Sequence[str] | None = None,
        src_lang: str | None = None,
        tgt_lang: str | None = None,
        question: str | Sequence[str] | None = None,
        context: str | None = None,
        **options: Any,
    ) -> Any:
        languages = (src_lang, tgt_lang) if src_lang and tgt_lang else None
        given = question if self.task is TaskName.QUESTION_ANSWERING else inputs
        assert given is not None
        results = []
        for text in _texts(given):
            ids = encode_messages(
                self.tokenizer, chat_prompt(self.task, text, languages=languages, context=context)
            )
            prompt = self._tensor(ids)
            output = self.model.generate(
                input_ids=prompt, attention_mask=prompt.new_ones(prompt.shape), **options
            )
            produced = self.tokenizer.decode(output[0, prompt.shape[1] :], skip_special_tokens=True).strip()
            if self.task is TaskName.QUESTION_ANSWERING:
                results.append(located_answer(produced, context or ""))
            else:
                results.append({REMOVED_TASKS[self.task].output_key: produced})
        if self.task is TaskName.QUESTION_ANSWERING:
            return results[0] if isinstance(given, str) else results
        return _one_or_many(given, results)

    def _tensor(self, ids: Sequence[int]) -> Any:
        import torch

        return torch.tensor([list(ids)], device=self.model.device)


def chat_prompt(
    task: TaskName, text: str, *, languages: tuple[str, str] | None = None, context: str | None = None
) -> list[dict[str, str]]:
    """The one user message that asks a chat model to do `task` on `text`."""
    if task is TaskName.SUMMARIZATION:
        prompt = (
            f"Summarize the following text in one or two sentences. Reply with the summary only.\n\n{text}"
        )
    elif task is TaskName.TRANSLATION:
        if languages is None:
            raise InvalidOption(
                "translation on a chat model needs the languages: write translation_en_to_fr."
            )
        source, target = (LANGUAGES.get(code, code) for code in languages)
        prompt = f"Translate the following text from {source} to {target}. Reply with the translation only.\n\n{text}"
    else:
        prompt = (
            "Answer the question using only the context. Reply with the answer only, as short as "
            f"possible.\n\nContext: {context}\n\nQuestion: {text}"
        )
    return [{"role": "user", "content": prompt}]


#: Labels small chat models put before an answer, echoing the prompt's "Question:" format.
ANSWER_LABELS = ("answer:", "a:")


def located_answer(answer: str, context: str) -> dict[str, Any]:
    """A generated answer in the extractive shape: where it first occurs in the context (so it can
    be highlighted), or None when the model did not quote the context; no score."""
    label = next((label for label in ANSWER_LABELS if answer.lower().startswith(label)), None)
    if label is not None:
        answer = answer[len(label) :].strip()
    at = context.lower().find(answer.lower()) if answer else -1
    if at < 0:
        return {"score": None, "start": None, "end": None, "answer": answer}
    return {"score": None, "start": at, "end": at + len(answer), "answer": answer}


__all__ = [
    "ANSWER_LABELS",
    "DEFAULT_TRANSLATION_PAIRS",
    "LANGUAGES",
    "REMOVED_TASKS",
    "ChatTask",
    "ExtractiveAnswers",
    "RemovedTask",
    "Runner",
    "Seq2SeqTask",
    "chat_prompt",
    "default_model",
    "head_class",
    "make_runner",
    "runner_for",
    "seq2seq_generation",
    "seq2seq_settings",
]
