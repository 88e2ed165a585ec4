"""`{name}` in a cell: replaced from the namespace when it resolves, kept as written otherwise."""

from __future__ import annotations

import pytest

from llm_magics.interpolate import interpolate

pytestmark = pytest.mark.torchfree


class Box:
    size = 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("about {topic}", "about tokens"),
        ("{items[1]} and {items[-1]}", "b and c"),
        ("{box.size} cm", "3 cm"),
        ("{unknown} stays", "{unknown} stays"),
        ("{items[9]} out of range stays", "{items[9]} out of range stays"),
        ("def f(): return {'a': 1}", "def f(): return {'a': 1}"),
        ("{{topic}} is escaped", "{topic} is escaped"),
    ],
)
def test_references_resolve_or_stay(text, expected):
    namespace = {"topic": "tokens", "items": ["a", "b", "c"], "box": Box()}
    assert interpolate(text, namespace) == expected
