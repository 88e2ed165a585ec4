"""`{name}` substitution in cell text from the user's namespace.

Only simple references are replaced: a name, optionally followed by `.attr` or `[int]` steps
(`{topic}`, `{In[3]}`, `{Out[3]}`, `{cfg.title}`). Anything else in braces — code, JSON, set
literals, unknown names — is left exactly as written, so a cell never fails because of a brace.
`{{name}}` is an escape and stays as `{name}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_REFERENCE = re.compile(r"(?<!\{)\{([A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[-?\d+\])*)\}(?!\})")
_ESCAPED = re.compile(r"\{\{([A-Za-z_][^{}]*)\}\}")
_STEP = re.compile(r"\.([A-Za-z_]\w*)|\[(-?\d+)\]")
_MISSING = object()


def _resolve(reference: str, namespace: Mapping[str, Any]) -> Any:
    head = re.match(r"[A-Za-z_]\w*", reference)
    assert head is not None
    value = namespace.get(head.group(0), _MISSING)
    for step in _STEP.finditer(reference, head.end()):
        if value is _MISSING:
            break
        attribute, index = step.groups()
        try:
            value = getattr(value, attribute) if attribute else value[int(index)]
        except Exception:
            value = _MISSING
    return value


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """Replace `{reference}` with `str(value)` where the reference resolves, else keep it."""

    def substitute(match: re.Match[str]) -> str:
        value = _resolve(match.group(1), namespace)
        return match.group(0) if value is _MISSING else str(value)

    return _ESCAPED.sub(r"{\1}", _REFERENCE.sub(substitute, text))
