"""What `{name}` substitution takes from the namespace, and what it leaves as written."""

from __future__ import annotations

import math
import types

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_magics.interpolate import interpolate

pytestmark = pytest.mark.torchfree


class Config:
    runs = 0
    level = "class data"

    def __init__(self) -> None:
        self.title = "Title"

    @property
    def computed(self) -> str:
        Config.runs += 1
        return "ran"

    def method(self) -> str:
        return "called"


class SneakyList(list):
    def __getitem__(self, index):  # type: ignore[override]
        raise AssertionError("a subclass's __getitem__ must not run")


@pytest.fixture
def namespace():
    Config.runs = 0
    return {
        "cfg": Config(),
        "math": math,
        "In": ["", "first cell"],
        "Out": {1: "first output"},
        "nested": types.SimpleNamespace(inner=types.SimpleNamespace(value=3)),
        "items": [10, 20],
        "sneaky": SneakyList([1, 2]),
        "get_ipython": print,
        "topic": "tokens",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{topic}", "tokens"),
        ("{cfg.title}", "Title"),
        ("{cfg.level}", "class data"),
        ("{math.pi}", str(math.pi)),
        ("{In[1]}", "first cell"),
        ("{Out[1]}", "first output"),
        ("{nested.inner.value}", "3"),
        ("{items[-1]}", "20"),
        ("{sneaky[0]}", "1"),  # through list's own lookup: the subclass's __getitem__ never runs
        ("{{topic}}", "{topic}"),
    ],
)
def test_plain_references_are_substituted(namespace, text, expected):
    assert interpolate(text, namespace) == expected


@pytest.mark.parametrize(
    "text",
    [
        "{cfg.computed}",  # a property would run code
        "{cfg.method}",
        "{cfg.__class__}",
        "{cfg.__class__.__mro__}",
        "{get_ipython.__globals__}",
        "{math.sqrt}",
        "{cfg._private}",
        "{Out[2]}",
        "{items[5]}",
        "{unknown}",
        "{topic.upper}",
        "{x: 1}",
        "def f(): return {}",
    ],
)
def test_anything_else_stays_as_written_and_runs_no_code(namespace, text):
    assert interpolate(text, namespace) == text
    assert Config.runs == 0


@given(st.text())
def test_text_without_references_is_unchanged(text):
    if "{" not in text:
        assert interpolate(text, {}) == text
