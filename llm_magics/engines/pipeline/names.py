"""A pipeline task's name, and a task as `pipeline(...)` is given it (`translation_en_to_fr`).

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ...errors import InvalidOption


class TaskName(Enum):
    """The text tasks `%llm_pipe` runs, by transformers' canonical name (help order)."""

    TEXT_CLASSIFICATION = "text-classification"
    TEXT_GENERATION = "text-generation"
    ZERO_SHOT_CLASSIFICATION = "zero-shot-classification"
    FILL_MASK = "fill-mask"
    TOKEN_CLASSIFICATION = "token-classification"
    QUESTION_ANSWERING = "question-answering"
    SUMMARIZATION = "summarization"
    TRANSLATION = "translation"

    def __str__(self) -> str:  # what messages, cards and `pipeline(...)` show
        return self.value


#: The names transformers also accepts for a task.
ALIASES = {"sentiment-analysis": TaskName.TEXT_CLASSIFICATION, "ner": TaskName.TOKEN_CLASSIFICATION}

#: The tasks that generate text (the generation flags apply to them).
GENERATING = (TaskName.TEXT_GENERATION, TaskName.SUMMARIZATION, TaskName.TRANSLATION)


@dataclass(frozen=True)
class PipeTask:
    """A task to run: its name and, for translation, the language pair (`translation_en_to_fr`)."""

    name: TaskName
    languages: tuple[str, str] | None = None

    def __str__(self) -> str:
        if self.languages is None:
            return self.name.value
        return f"{self.name.value}_{self.languages[0]}_to_{self.languages[1]}"


def split_languages(text: str) -> tuple[str, tuple[str, str] | None]:
    """`translation_en_to_fr` → ("translation", ("en", "fr")); any other name → (name, None)."""
    if not text.startswith("translation_"):
        return text, None
    parts = text.split("_")
    if len(parts) != 4 or parts[2] != "to" or not parts[1] or not parts[3]:
        raise InvalidOption(f"{text}: write the languages as translation_en_to_fr.")
    return TaskName.TRANSLATION.value, (parts[1], parts[3])


__all__ = ["ALIASES", "GENERATING", "PipeTask", "TaskName", "split_languages"]
