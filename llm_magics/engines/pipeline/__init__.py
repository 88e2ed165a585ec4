"""The Pipeline API engine: `pipeline("sentiment-analysis")` and friends, in the registry.

    names.py          TaskName, and PipeTask: a task as `pipeline(...)` is given it
    tasks.py          the text tasks, their heads and default models
    engine.py         PipelineEngine, TextGenerationEngine; running a pipeline over loaded objects
    fit.py            which loaded model can run which task, and the options only a model bounds
    removed_tasks.py  summarization, translation and question-answering, which transformers 5
                      removed, run on the models those pipelines took and on chat models

Where the installed transformers still has a removed task (question-answering before 5.3) and the
model is not a chat model, transformers' own pipeline runs it. Importing this package imports
neither torch nor transformers.
"""

from .engine import PipelineEngine, TextGenerationEngine, make_pipeline, run_pipeline, task_details
from .fit import can_run, check_against_model, plan_of, runs_on_chat_models, task_of
from .names import ALIASES, GENERATING, PipeTask, TaskName
from .tasks import (
    TASKS,
    Task,
    available_tasks,
    default_model,
    head_class,
    is_removed,
    resolve_task,
    supported_tasks,
    typed_names,
)

__all__ = [
    "ALIASES",
    "GENERATING",
    "TASKS",
    "PipeTask",
    "PipelineEngine",
    "Task",
    "TaskName",
    "TextGenerationEngine",
    "available_tasks",
    "can_run",
    "check_against_model",
    "default_model",
    "head_class",
    "is_removed",
    "make_pipeline",
    "plan_of",
    "resolve_task",
    "run_pipeline",
    "runs_on_chat_models",
    "supported_tasks",
    "task_details",
    "task_of",
    "typed_names",
]
