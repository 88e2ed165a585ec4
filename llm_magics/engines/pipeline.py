"""The Pipeline API tasks as an engine: `pipeline("sentiment-analysis")` and friends, in the registry.

A `PipelineEngine` is a transformers pipeline over a model with a task head (sequence
classification, masked LM …), loaded through `engines.transformers.loading` like every in-process model: the same
plan, memory estimate, quantization, dtype and device. `TextGenerationEngine` is a causal LM, so it
is a `TransformersEngine` as well: it also chats and completes, and a `text-generation` pipeline
over a chat model already loaded wraps that model (`pipeline_over`) instead of loading a copy.

Summarization, translation and question-answering, which transformers 5 removed, are run by
`removed_tasks` on the models the removed pipelines took (seq2seq, extractive) and on chat models;
where the installed transformers still has one of them (question-answering before 5.3) and the
model is not a chat model, transformers' own pipeline runs it.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidOption
from ..values import EngineInfo
from . import removed_tasks
from .transformers import TransformersEngine


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


def _supported() -> dict[str, Any]:
    from transformers.pipelines import SUPPORTED_TASKS

    return dict(SUPPORTED_TASKS)


def available_tasks() -> list[str]:
    """Our tasks that run with the installed transformers (the removed ones always do), aliases included."""
    supported = _supported()
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
    if base in _supported():
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
    entry = _supported()[task_info(task).name]
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
    default = _supported()[task_info(task).name].get("default", {})
    model = default.get("model")
    if isinstance(model, dict):
        model = model.get("pt")
    if not model:
        raise InvalidOption(f"{task} has no default model in this transformers: pass --model.")
    hub_id, revision = model if isinstance(model, tuple) else (model, None)
    return hub_id, revision


def make_pipeline(task: str, model: Any, tokenizer: Any) -> Any:
    """A transformers pipeline over objects already in memory: no download, no copy (microseconds).

    A removed task gets `removed_tasks`' runner, unless this transformers still has the task and
    the model is one its pipeline takes (an extractive model before 5.3).
    """
    import warnings

    from transformers import pipeline

    base = task_info(task).name
    if is_removed(task) and (
        base not in _supported() or removed_tasks.runner_for(model.config) is removed_tasks.Runner.CHAT
    ):
        return removed_tasks.make_runner(base, model, tokenizer)
    with warnings.catch_warnings():
        # "The model 'X' is not supported for text-generation" for architectures its list lacks.
        warnings.simplefilter("ignore")
        build: Any = pipeline  # its overloads want a literal task
        return build(base, model=model, tokenizer=tokenizer)


def task_details(task: str, info: EngineInfo) -> EngineInfo:
    """`info` with the task as a card row (and in `%llm_list`)."""
    from dataclasses import replace

    from ..values import EngineKind

    return replace(info, kind=EngineKind.PIPELINE, details=[*info.details, ("task", task)])


class PipelineEngine:
    """A Pipeline API task over an in-process model: `Engine`, `HoldsModel`, `Tokenizes`.

    `plan` is the `engines.transformers.plan.LoadPlan` it was loaded with (for `--code`).
    """

    def __init__(self, info: EngineInfo, task: str, model: Any, tokenizer: Any) -> None:
        self.name = info.name
        self.info = info
        self.task = task
        self.plan: Any = None
        self._model = model
        self._tokenizer = tokenizer
        self._pipeline: Any = None

    def __repr__(self) -> str:
        return f"<PipelineEngine {self.name!r} {self.task} from {self.info.source}>"

    @property
    def model(self) -> Any:
        return self._model

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def pipeline(self) -> Any:
        if self._pipeline is None:
            self._pipeline = make_pipeline(self.task, self._model, self._tokenizer)
        return self._pipeline

    def run(self, inputs: str | Sequence[str], **options: Any) -> Any:
        """The pipeline's own output for `inputs`, exactly as `pipeline(...)(inputs, **options)`."""
        return run_pipeline(self.pipeline, inputs, options)

    def describe(self) -> EngineInfo:
        return self.info

    def context_window(self) -> int | None:
        return self.info.context_length

    def close(self) -> int:
        self._pipeline = None
        self._model = None
        self._tokenizer = None
        return self.info.footprint_bytes


class TextGenerationEngine(TransformersEngine):
    """A causal LM loaded for a pipeline task (`text-generation`, or a removed task run on a chat
    model): a `TransformersEngine` (it chats and completes too) that also runs the task."""

    def __init__(self, info: EngineInfo, tokenizer: Any, model: Any, task: str = "text-generation") -> None:
        super().__init__(info, tokenizer, model)
        self.task = task
        self._pipeline: Any = None

    @property
    def pipeline(self) -> Any:
        if self._pipeline is None:
            self._pipeline = make_pipeline(self.task, self.model, self.tokenizer)
        return self._pipeline

    def run(self, inputs: str | Sequence[str], **options: Any) -> Any:
        return run_pipeline(self.pipeline, inputs, options)

    def close(self) -> int:
        self._pipeline = None
        return super().close()


def run_pipeline(pipe: Any, inputs: str | Sequence[str], options: dict[str, Any]) -> Any:
    """Call `pipe`, turning a model that cannot do the task into one line (by exception type)."""
    import torch

    from ..errors import GenerationFailed

    if options.get("seed") is not None:
        torch.manual_seed(options.pop("seed"))
    else:
        options.pop("seed", None)
    try:
        with torch.inference_mode():
            inputs = inputs if isinstance(inputs, str) else list(inputs)
            if "context" in options:  # question-answering takes the question by name
                return pipe(question=inputs, **options)
            return pipe(inputs, **options)
    except torch.OutOfMemoryError as error:
        raise GenerationFailed(
            "Out of memory while running the pipeline: try fewer inputs or --quant 4bit."
        ) from error
    except Exception as error:
        from transformers.pipelines.base import PipelineException

        # The pipeline's own complaints about its input ("No mask_token found") are user errors.
        if isinstance(error, PipelineException):
            raise InvalidOption(f"{pipe.task}: {error.args[-1] if error.args else error}") from error
        raise


__all__ = [
    "ALIASES",
    "TASKS",
    "PipelineEngine",
    "Task",
    "TextGenerationEngine",
    "available_tasks",
    "default_model",
    "head_class",
    "is_removed",
    "make_pipeline",
    "resolve_task",
    "run_pipeline",
    "task_details",
]
