"""Which model can run which task: the model a pipeline task reuses, refuses or bounds.

A task may run on a model already in the registry: the one loaded for it, a chat model
(text-generation and the tasks transformers removed), a seq2seq or extractive model for a removed
task with the head it needs. Options only the model can bound are checked here before it runs.
"""

from __future__ import annotations

from typing import Any

from ...errors import InvalidOption
from ...values import GenerationOptions
from ..base import Engine
from ..transformers import TransformersEngine
from . import removed_tasks
from .engine import PipelineEngine, TextGenerationEngine
from .names import PipeTask, TaskName
from .tasks import head_class, is_removed


def task_of(engine: Engine) -> TaskName | None:
    """The pipeline task an engine runs, or None for engines that run none."""
    return engine.task if isinstance(engine, (PipelineEngine, TextGenerationEngine)) else None


def plan_of(engine: Engine) -> Any:
    """The load plan of an in-process engine (what `--code` prints), or None for a remote one."""
    return engine.plan if isinstance(engine, (PipelineEngine, TransformersEngine)) else None


def runs_on_chat_models(task: TaskName) -> bool:
    """text-generation, and the tasks transformers removed, run on a chat model already loaded."""
    return task is TaskName.TEXT_GENERATION or is_removed(task)


def can_run(engine: Engine, task: TaskName) -> bool:
    """Whether a loaded engine's model can do `task`: the task it was loaded for; text-generation
    or a removed task on a chat model; a removed task on a model with a head that does it."""
    if task_of(engine) is task:
        return True
    model = (
        getattr(engine, "model", None) if isinstance(engine, (PipelineEngine, TransformersEngine)) else None
    )
    if model is None:
        return False
    if isinstance(engine, TransformersEngine):
        return runs_on_chat_models(task)
    # A pipeline engine holds a task head: a seq2seq or extractive one may do a removed task too.
    if not is_removed(task) or removed_tasks.runner_for(model.config) is removed_tasks.Runner.CHAT:
        return False
    try:
        head_class(task, model.config)
    except InvalidOption:
        return False
    return True


def check_against_model(
    engine: Engine, task: PipeTask, inputs: str | list[str], options: dict[str, Any]
) -> None:
    """Options that only the model can bound, checked before it runs (the engine is not registered
    yet, so a refusal changes nothing): fill-mask's --top-k within the vocabulary; text-generation's
    prompt and --max-new-tokens within the context, as %%llm_chat checks them (past it a model with
    learned positions fails with an IndexError, one with rotary ones never stops)."""
    model = getattr(engine, "model", None)
    vocabulary = getattr(getattr(model, "config", None), "vocab_size", None)
    if (
        task.name is TaskName.FILL_MASK
        and isinstance(vocabulary, int)
        and options.get("top_k", 0) > vocabulary
    ):
        raise InvalidOption(
            f"--top-k {options['top_k']}: {engine.name} has {vocabulary:,} tokens to choose from; ask for fewer."
        )
    if task.name is not TaskName.TEXT_GENERATION or "max_new_tokens" not in options:
        return
    context = engine.context_window()
    if context is None:
        return
    GenerationOptions(max_new_tokens=options["max_new_tokens"]).validate(context)
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is None:
        return
    longest = max(
        len(tokenizer(text)["input_ids"]) for text in ([inputs] if isinstance(inputs, str) else inputs)
    )
    if longest + options["max_new_tokens"] > context:
        raise InvalidOption(
            f"The input needs {longest} tokens and --max-new-tokens {options['max_new_tokens']} more, but "
            f"{engine.name}'s context is {context} tokens: shorten the input or lower --max-new-tokens."
        )


__all__ = ["can_run", "check_against_model", "plan_of", "runs_on_chat_models", "task_of"]
