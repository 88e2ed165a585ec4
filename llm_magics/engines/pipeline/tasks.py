"""The Pipeline API's text tasks: which exist, their aliases, the head each needs, the model
`pipeline(task)` picks by default. Importing this module imports neither torch nor transformers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import InvalidOption
from . import removed_tasks
from .names import ALIASES, PipeTask, TaskName, split_languages


@dataclass(frozen=True)
class Task:
    """A text task we can run and show. `needs` is the `%llm_pipe` option it cannot do without
    (`example`: how to give it); `options` are the ones that belong to it alone."""

    name: TaskName
    summary: str
    needs: str | None = None
    example: str = ""
    options: tuple[str, ...] = ()


#: Text tasks, in the order the help lists them.
TASKS = {
    task.name: task
    for task in (
        Task(TaskName.TEXT_CLASSIFICATION, "a label and its score for each text (sentiment-analysis)"),
        Task(TaskName.TEXT_GENERATION, "the text continued"),
        Task(
            TaskName.ZERO_SHOT_CLASSIFICATION,
            "scores for labels you choose",
            needs="labels",
            example='--labels "education, sports"',
            options=("labels", "multi_label", "hypothesis_template"),
        ),
        Task(TaskName.FILL_MASK, "the likeliest words for the mask token"),
        Task(TaskName.TOKEN_CLASSIFICATION, "named entities in the text (ner)", options=("aggregation",)),
        Task(
            TaskName.QUESTION_ANSWERING,
            "the answer's span in a context",
            needs="context",
            example='--context "the text that holds the answer"',
            options=("context",),
        ),
        Task(TaskName.SUMMARIZATION, "a shorter text"),
        Task(TaskName.TRANSLATION, "the text in another language"),
    )
}


def supported_tasks() -> dict[str, Any]:
    """transformers' own task table (importing transformers)."""
    from transformers.pipelines import SUPPORTED_TASKS

    return dict(SUPPORTED_TASKS)


def available_tasks() -> list[TaskName]:
    """Our tasks that run with the installed transformers (the removed ones always do)."""
    supported = supported_tasks()
    return [name for name in TASKS if name.value in supported or name in removed_tasks.REMOVED_TASKS]


def typed_names() -> list[str]:
    """What may be typed for a task here: the available tasks, then their aliases."""
    names = available_tasks()
    return [name.value for name in names] + [alias for alias, name in ALIASES.items() if name in names]


def resolve_task(text: str) -> PipeTask:
    """The task TEXT names (an alias, `translation_en_to_fr`), or one line saying which exist."""
    typed = text.strip().lower()
    base, languages = split_languages(ALIASES[typed].value if typed in ALIASES else typed)
    for name in available_tasks():
        if name.value == base:
            return PipeTask(name, languages)
    listed = ", ".join(typed_names())
    if base in supported_tasks():
        raise InvalidOption(f"{text} is not a text task %llm_pipe shows. Tasks: {listed}.")
    raise InvalidOption(f"Unknown task {text!r}. Tasks: {listed}.")


def is_removed(name: TaskName) -> bool:
    """Whether `removed_tasks` may run the task (transformers 5 removed it)."""
    return name in removed_tasks.REMOVED_TASKS


def head_class(name: TaskName, config: Any = None) -> Any:
    """The auto class whose head the task needs (`AutoModelForSequenceClassification` …); for a
    removed task, the one that fits the model's config (seq2seq, extractive, or a chat model's)."""
    if is_removed(name):
        if config is None:
            raise InvalidOption(f"{name} needs the model's config to choose its head.")
        return removed_tasks.head_class(name, config)
    entry = supported_tasks()[name.value]
    heads = entry.get("pt") or ()
    if not heads:
        raise InvalidOption(f"{name} needs PyTorch, which transformers cannot find.")
    return heads[0]


def default_model(task: PipeTask) -> tuple[str, str | None]:
    """The hub id and revision `pipeline(task)` picks when given no model (for a removed task, the
    one transformers 4 picked).

    transformers 5 writes `{"model": (id, revision)}`; 4.x wrote `{"model": {"pt": (id, revision)}}`.
    """
    if is_removed(task.name):
        return removed_tasks.default_model(task.name, task.languages)
    default = supported_tasks()[task.name.value].get("default", {})
    model = default.get("model")
    if isinstance(model, dict):
        model = model.get("pt")
    if not model:
        raise InvalidOption(f"{task} has no default model in this transformers: pass --model.")
    hub_id, revision = model if isinstance(model, tuple) else (model, None)
    return hub_id, revision


__all__ = [
    "TASKS",
    "Task",
    "available_tasks",
    "default_model",
    "head_class",
    "is_removed",
    "resolve_task",
    "supported_tasks",
    "typed_names",
]
