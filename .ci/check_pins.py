"""Fail loudly when an install changed a pinned package: `check_pins.py FREEZE_BEFORE PIN...`.

FREEZE_BEFORE is `pip freeze` taken right after the pins were installed; each PIN is `name==version`.
Every pinned package must still be installed at its pinned version, and at the version it had in
FREEZE_BEFORE. Packages the install added are listed, for the record.
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, distributions, version
from pathlib import Path


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _freeze(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        name, sep, pinned = line.strip().partition("==")
        if sep:
            found[_norm(name)] = pinned
    return found


def main(argv: list[str]) -> int:
    before = _freeze(Path(argv[0]).read_text().splitlines())
    changed = []
    for pin in argv[1:]:
        name, _, wanted = pin.partition("==")
        try:
            now = version(name)
        except PackageNotFoundError:
            now = "(not installed)"
        was = before.get(_norm(name), "(not installed)")
        # torch's local version (+cpu) is how the CPU wheel names itself, not a change.
        if now.split("+")[0] != wanted or now != was:
            changed.append(f"{name}: pinned {wanted}, was {was}, now {now}")
    installed = {_norm(d.metadata["Name"]): d.version for d in distributions()}
    added = sorted(f"{name}=={v}" for name, v in installed.items() if name not in before)
    if added:
        print("added beside the pins:", " ".join(added))
    if changed:
        print("error: pip changed pinned packages:\n  " + "\n  ".join(changed), file=sys.stderr)
        return 1
    print(f"all {len(argv) - 1} pins unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
