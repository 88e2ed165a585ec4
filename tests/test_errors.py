"""Expected failures reach the user as one line, also where torch and transformers are missing."""

from __future__ import annotations

import inspect

import pytest

from llm_magics import errors
from llm_magics.engines.transformers import versions
from tests.helpers import assert_one_line_error, magics, run

pytestmark = pytest.mark.torchfree

ERROR_CLASSES = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.LlmMagicsError) and cls is not errors.LlmMagicsError
]


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_renders_as_one_line_and_is_in_the_tree(cls):
    assert cls.__doc__, f"{cls.__name__} says when it is raised"
    assert cls.__name__ in errors.__doc__
    assert cls("Do this.")._render_traceback_() == [f"{cls.__name__}: Do this."]


def test_llm_load_without_transformers_says_what_to_install(shell, monkeypatch):
    monkeypatch.setattr(versions, "installed_transformers", lambda: None)
    result, captured = run(shell, "%llm_load")
    assert_one_line_error(result, captured, "TransformersUnsupported", "transformers is not installed")
    assert len(magics(shell).registry) == 0
