"""The transformers this package runs on: read without importing it, refused in one line when too old."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from packaging.version import Version

from ...errors import TransformersUnsupported

#: The oldest transformers the package is tested with (`make test-colab COLAB_TRANSFORMERS=5.0.0`);
#: pyproject.toml declares the same floor.
MIN_TRANSFORMERS = (5, 0)


def installed_transformers() -> str | None:
    """The installed transformers version, read without importing it (None when it is missing)."""

    try:
        return version("transformers")
    except PackageNotFoundError:
        return None


def require_transformers() -> None:
    """Stop a load in one line when transformers is missing or older than MIN_TRANSFORMERS."""
    installed = installed_transformers()
    floor = ".".join(map(str, MIN_TRANSFORMERS))
    install = f'run %pip install "transformers>={floor}", then restart the runtime'
    if installed is None:
        raise TransformersUnsupported(f"transformers is not installed: {install}.")
    # packaging comes with transformers (one of its own dependencies).

    if Version(installed).release[:2] < MIN_TRANSFORMERS:
        raise TransformersUnsupported(
            f"transformers {installed} is older than {floor}, the oldest llm_magics supports: {install}."
        )
