"""Driving magics as a user does and reading what they showed: shared by the shell tests."""

from __future__ import annotations

from IPython.utils.capture import capture_output


def magics(shell):
    return shell.magics_manager.registry["LlmMagics"]


def run(shell, line: str):
    """Run a line as a user would (errors shown, not raised) and return what was displayed."""
    with capture_output() as captured:
        result = shell.run_cell(line)
    return result, captured


def shown_text(captured) -> str:
    return captured.stdout + "".join(out.data.get("text/plain", "") for out in captured.outputs)


def shown_html(captured) -> str:
    return "".join(out.data.get("text/html", "") for out in captured.outputs)


def assert_one_line_error(result, captured, error_type: str, fragment: str):
    """A user error: the cell fails, and what is shown is one line naming what to do."""
    assert not result.success
    assert type(result.error_in_exec).__name__ == error_type
    shown = (captured.stdout + captured.stderr).strip()
    assert "Traceback" not in shown
    assert len(shown.splitlines()) == 1, shown
    assert fragment in shown


class FakeClock:
    """Advances a fixed step each time it is read: a stand-in for time that tests can count on."""

    def __init__(self, step: float = 0.01) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class RaiseOnForward:
    """A forward hook that raises on the n-th forward pass, as Ctrl-C or running out of memory would."""

    def __init__(self, exception: BaseException, on_call: int) -> None:
        self.exception, self.on_call, self.calls = exception, on_call, 0

    def __call__(self, module, args, output):
        self.calls += 1
        if self.calls == self.on_call:
            raise self.exception


def say(
    engine,
    message,
    *,
    session=None,
    max_new_tokens=12,
    reuse_cache=True,
    system=None,
    on_text=None,
    cpu_decoding="exact",
    **options,
):
    """One chat turn through the engine, as `%%llm_chat` takes it: prepare, then respond (and commit).

    `session` defaults to the engine's current conversation.
    """
    from llm_magics.values import GenerationOptions

    engine.reuse_cache, engine.cpu_decoding = reuse_cache, cpu_decoding
    session = session or engine.session
    prepared = session.prepare(message, max_new_tokens=max_new_tokens, system=system)
    return session.respond(
        prepared, GenerationOptions(max_new_tokens=max_new_tokens, **options), on_text=on_text
    )
