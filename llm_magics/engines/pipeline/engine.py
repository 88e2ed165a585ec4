"""The Pipeline API tasks as engines in the registry.

A `PipelineEngine` is a transformers pipeline over a model with a task head (sequence
classification, masked LM …), loaded through `engines.transformers.loading` like every in-process
model: the same plan, memory estimate, quantization, dtype and device. `TextGenerationEngine` is a
causal LM, so it is a `TransformersEngine` as well: it also chats and completes, and a
`text-generation` pipeline over a chat model already loaded wraps that model instead of loading a
copy.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ...errors import GenerationFailed, InvalidOption
from ...values import EngineInfo, EngineKind
from ..transformers import TransformersEngine
from . import removed_tasks
from .names import TaskName
from .tasks import is_removed, supported_tasks


def make_pipeline(task: TaskName, model: Any, tokenizer: Any) -> Any:
    """A transformers pipeline over objects already in memory: no download, no copy (microseconds).

    A removed task gets `removed_tasks`' runner, unless this transformers still has the task and
    the model is one its pipeline takes (an extractive model before 5.3).
    """

    from transformers import pipeline

    if is_removed(task) and (
        task.value not in supported_tasks()
        or removed_tasks.runner_for(model.config) is removed_tasks.Runner.CHAT
    ):
        return removed_tasks.make_runner(task, model, tokenizer)
    with warnings.catch_warnings():
        # "The model 'X' is not supported for text-generation" for architectures its list lacks.
        warnings.simplefilter("ignore")
        build: Any = pipeline  # its overloads want a literal task
        return build(task.value, model=model, tokenizer=tokenizer)


def task_details(task: TaskName, info: EngineInfo) -> EngineInfo:
    """`info` with the task as a card row (and in `%llm_list`)."""

    return replace(info, kind=EngineKind.PIPELINE, details=[*info.details, ("task", task.value)])


class PipelineEngine:
    """A Pipeline API task over an in-process model: `Engine`, `HoldsModel`, `Tokenizes`.

    `plan` is the `engines.transformers.plan.LoadPlan` it was loaded with (for `--code`).
    """

    def __init__(self, info: EngineInfo, task: TaskName, model: Any, tokenizer: Any) -> None:
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

    def __init__(
        self, info: EngineInfo, tokenizer: Any, model: Any, task: TaskName = TaskName.TEXT_GENERATION
    ) -> None:
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


__all__ = ["PipelineEngine", "TextGenerationEngine", "make_pipeline", "run_pipeline", "task_details"]
