"""`{name}` substitution in cell text from the user's namespace.

What is substituted, and nothing else:

- a name: `{topic}` becomes `str(topic)`;
- `In[n]` and `Out[n]`, and `[n]` after any list, tuple, string or dict (`{scores[0]}`);
- `.attr` steps that read plain data: an instance's own attribute or a module's value
  (`{cfg.title}`, `{math.pi}`). A step that would run code — a property, a method, any other
  descriptor — or that starts with an underscore (`{x.__class__}`, `{f.__globals__}`) is not taken.

Anything else in braces — code, JSON, set literals, unknown names, refused steps — is left exactly
as written, so a cell never fails because of a brace. `{{name}}` is an escape and stays as `{name}`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

_REFERENCE = re.compile(r"(?<!\{)\{([A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[-?\d+\])*)\}(?!\})")
_ESCAPED = re.compile(r"\{\{([A-Za-z_][^{}]*)\}\}")
_STEP = re.compile(r"\.([A-Za-z_]\w*)|\[(-?\d+)\]")
_MISSING = object()


def _attribute(value: Any, name: str) -> Any:
    """A plain data attribute of `value`, or _MISSING when reading it could run code."""
    if name.startswith("_"):
        return _MISSING
    try:
        found = inspect.getattr_static(value, name)
    except AttributeError:
        return _MISSING
    # Properties, methods, functions and other descriptors compute their value: not taken.
    return _MISSING if hasattr(type(found), "__get__") or callable(found) else found


def _item(value: Any, index: int) -> Any:
    """`value[index]` through the built-in type's own lookup (a subclass's `__getitem__` never runs)."""
    if isinstance(value, dict):
        return dict.get(value, index, _MISSING)
    lookup: Any = next((kind.__getitem__ for kind in (list, tuple, str) if isinstance(value, kind)), None)
    if lookup is None:
        return _MISSING
    try:
        return lookup(value, index)
    except IndexError:
        return _MISSING


def _resolve(reference: str, namespace: Mapping[str, Any]) -> Any:
    head = re.match(r"[A-Za-z_]\w*", reference)
    assert head is not None
    value = namespace.get(head.group(0), _MISSING)
    for step in _STEP.finditer(reference, head.end()):
        if value is _MISSING:
            break
        attribute, index = step.groups()
        value = _attribute(value, attribute) if attribute else _item(value, int(index))
    return value


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """Replace `{reference}` with `str(value)` where the reference resolves, else keep it."""

    def substitute(match: re.Match[str]) -> str:
        value = _resolve(match.group(1), namespace)
        return match.group(0) if value is _MISSING else str(value)

    return _ESCAPED.sub(r"{\1}", _REFERENCE.sub(substitute, text))
