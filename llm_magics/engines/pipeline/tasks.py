"""The Pipeline API's text tasks: which exist, their aliases, the head each needs, the model
`pipeline(task)` picks by default. Importing this module imports neither torch nor transformers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import InvalidOption
from . import removed_tasks


@dataclass(frozen=True)
class Task:
    """A text task we can run and show. `needs` is the `%llm_pipe` option it cannot do without
    (`example`: how to give it); `options` are the ones that belong to it alone."""

    name: str
    summary: str
    needs: str | None = None
    example: str = ""
    options: tuple[str, ...] = ()


#: Text tasks, by transformers' canonical name, in the order the help lists them.
TASKS = {
    task.name: task
    for task in (
        Task("text-classification", "a label and its score for each text (sentiment-analysis)"),
        Task("text-generation", "the text continued"),
        Task(
            "zero-shot-classification",
            "scores for labels you choose",
            needs="labels",
            example='--labels "education, sports"',
            options=("labels", "multi_label", "hypothesis_template"),
        ),
        Task("fill-mask", "the likeliest words for the mask token"),
        Task("token-classification", "named entities in the text (ner)", options=("aggregation",)),
        Task(
            "question-answering",
            "the answer's span in a context",
            needs="context",
            example='--context "the text that holds the answer"',
            options=("context",),
        ),
        Task("summarization", "a shorter text"),
        Task("translation", "the text in another language"),
    )
}
ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}


def supported_tasks() -> dict[str, Any]:
    """transformers' own task table (importing transformers)."""
    from transformers.pipelines import SUPPORTED_TASKS

    return dict(SUPPORTED_TASKS)


def available_tasks() -> list[str]:
    """Our tasks that run with the installed transformers (the removed ones always do), aliases included."""
    supported = supported_tasks()
    names = [name for name in TASKS if name in supported or name in removed_tasks.REMOVED_TASKS]
    return names + [alias for alias, name in ALIASES.items() if name in names]


def resolve_task(text: str) -> str:
    """The canonical task for TASK (an alias, `translation_en_to_fr`), or one line saying which exist."""
    name = text.strip().lower()
    name = ALIASES.get(name, name)
    base, _ = removed_tasks.split_languages(name)
    if base in available_tasks():
        return name
    listed = ", ".join(available_tasks())
    if base in supported_tasks():
        raise InvalidOption(f"{text} is not a text task %llm_pipe shows. Tasks: {listed}.")
    raise InvalidOption(f"Unknown task {text!r}. Tasks: {listed}.")


def task_info(task: str) -> Task:
    return TASKS[removed_tasks.split_languages(task)[0]]


def is_removed(task: str) -> bool:
    """Whether `removed_tasks` may run the task (transformers 5 removed it)."""
    return task_info(task).name in removed_tasks.REMOVED_TASKS


def head_class(task: str, config: Any = None) -> Any:
    """The auto class whose head the task needs (`AutoModelForSequenceClassification` …); for a
    removed task, the one that fits the model's config (seq2seq, extractive, or a chat model's)."""
    if is_removed(task):
        if config is None:
            raise InvalidOption(f"{task} needs the model's config to choose its head.")
        return removed_tasks.head_class(task_info(task).name, config)
    entry = supported_tasks()[task_info(task).name]
    heads = entry.get("pt") or ()
    if not heads:
        raise InvalidOption(f"{task} needs PyTorch, which transformers cannot find.")
    return heads[0]


def default_model(task: str) -> tuple[str, str | None]:
    """The hub id and revision `pipeline(task)` picks when given no model (for a removed task, the
    one transformers 4 picked).

    transformers 5 writes `{"model": (id, revision)}`; 4.x wrote `{"model": {"pt": (id, revision)}}`.
    """
    if is_removed(task):
        base, languages = removed_tasks.split_languages(task)
        return removed_tasks.default_model(base, languages)
    default = supported_tasks()[task_info(task).name].get("default", {})
    model = default.get("model")
    if isinstance(model, dict):
        model = model.get("pt")
    if not model:
        raise InvalidOption(f"{task} has no default model in this transformers: pass --model.")
    hub_id, revision = model if isinstance(model, tuple) else (model, None)
    return hub_id, revision


__all__ = [
    "ALIASES",
    "TASKS",
    "Task",
    "available_tasks",
    "default_model",
    "head_class",
    "is_removed",
    "resolve_task",
    "task_info",
]
