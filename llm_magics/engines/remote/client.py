"""The HTTP side of one server: the official `openai` client and plain HTTP over one connection
pool (the routes OpenAI does not have, `/tokenize` and `/props`, use the same library), and the
one place where their exceptions become `llm_magics.errors`' remote errors, by type.

The API key lives only in the HTTP client's headers: no card, error, repr or file ever holds it.
"""

from __future__ import annotations

import importlib
import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ...errors import (
    AuthenticationFailed,
    ContextTooLong,
    ModelNotServed,
    NotOpenAICompatible,
    RemoteError,
    RemoteExtraMissing,
    ServerDisconnected,
    ServerRejected,
    ServerTimeout,
    ServerUnreachable,
    first_line,
)
from .endpoint import DEFAULT_KEY_VARIABLE, Endpoint, Timeouts
from .stream import BoundedTransport

#: What the openai client sends as a key when there is none: servers without keys ignore it.
_NO_KEY = "EMPTY"


def _openai() -> Any:
    try:
        return importlib.import_module("openai")
    except ImportError:
        raise RemoteExtraMissing(
            "Talking to a server needs the openai package: pip install 'ipython-llm-magics[remote]'."
        ) from None


def _http_library(openai: Any) -> Any:
    """The HTTP library the installed openai is built on (httpx, or httpx2 from openai 3 on):
    `DefaultHttpxClient` is that library's `Client` with openai's defaults."""
    client_class = next(c for c in openai.DefaultHttpxClient.__mro__[1:] if c.__name__ == "Client")
    return importlib.import_module(client_class.__module__.partition(".")[0])


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _server_message(body: Any, fallback: str, redact: Callable[[str], str]) -> str:
    """The human part of an error body: OpenAI's {"error": {"message"}}, vLLM's {"message"},
    FastAPI's {"detail"}, llama.cpp's {"error": {"message"}}; `redact`ed before it is cut short,
    so no part of a secret the server quoted survives."""

    def said(text: str) -> str:
        return first_line(Exception(redact(text)), 200)

    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            for key in ("message", "detail"):
                if isinstance(inner.get(key), str):
                    return said(inner[key])
        elif isinstance(inner, str):
            return said(inner)
        if isinstance(body.get("detail"), str):
            return said(body["detail"])
    return said(fallback) if fallback else ""


class Server:
    """One server: the openai client and plain HTTP over one connection pool, and the one place
    where their exceptions become ours."""

    def __init__(
        self, endpoint: Endpoint, key: str | None, key_variable: str | None, timeouts: Timeouts
    ) -> None:
        self.endpoint, self.key_variable, self.timeouts = endpoint, key_variable, timeouts
        self.openai = _openai()
        self.http_lib = _http_library(self.openai)
        timeout = self._timeout(timeouts)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        transport = BoundedTransport(
            self.http_lib,
            lambda: self.timeouts.read,
            limits=getattr(self.openai, "DEFAULT_CONNECTION_LIMITS", None) or self.http_lib.Limits(),
        )
        self.http = self.openai.DefaultHttpxClient(timeout=timeout, headers=headers, transport=transport)
        self.client = self.openai.OpenAI(
            base_url=endpoint.api,
            api_key=key or _NO_KEY,
            http_client=self.http,
            max_retries=0,
            timeout=timeout,
        )

    def _timeout(self, timeouts: Timeouts) -> Any:
        return self.http_lib.Timeout(timeouts.read, connect=timeouts.connect)

    def set_timeouts(self, timeouts: Timeouts) -> None:
        """Use `timeouts` from the next request on (the traits changed after `%llm_load`)."""
        self.timeouts = timeouts
        self.http.timeout = self.client.timeout = self._timeout(timeouts)

    def __repr__(self) -> str:
        return f"<Server {self.endpoint.url}>"

    def redact(self, text: str) -> str:
        """`text` with the API key taken out: a server may quote the request's headers back."""
        header = str(self.http.headers.get("authorization", ""))
        for secret in (header, header.removeprefix("Bearer ")):
            if secret:
                text = text.replace(secret, "[API key]")
        return text

    def close(self) -> None:
        self.client.close()
        self.http.close()

    # -- plain routes ---------------------------------------------------------------------------

    def get_json(self, path: str) -> Any:
        with self.errors():
            return self._json(self.http.get(self.endpoint.url + path), path)

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        with self.errors():
            return self._json(self.http.post(self.endpoint.url + path, json=body), path)

    def _json(self, response: Any, path: str) -> Any:
        if response.status_code >= 400:
            raise self.status_error(response.status_code, _json_or_text(response), path)
        try:
            return response.json()
        except ValueError as exc:
            raise NotOpenAICompatible(
                f"{self.endpoint.url}{path} answered {response.headers.get('content-type', 'something')}, not JSON: "
                "is this an OpenAI-compatible API's address?"
            ) from exc

    # -- errors ---------------------------------------------------------------------------------

    @contextmanager
    def errors(self, bad_request: Callable[[str], RemoteError] | None = None) -> Iterator[None]:
        """Re-raise the openai and HTTP libraries' exceptions as ours (`from` the original).

        `bad_request` makes the error for a 400 answer, from the server's own words, where the
        caller knows what a 400 means for its request (too many log-probabilities)."""
        try:
            yield
        except RemoteError:
            raise
        except Exception as exc:
            mapped = self.error(exc, bad_request)
            if mapped is None:
                raise
            raise mapped from exc

    def error(
        self, exc: BaseException, bad_request: Callable[[str], RemoteError] | None = None
    ) -> RemoteError | None:
        """Our error for a library exception, chosen by its type; None for anything else (a bug)."""
        openai, http = self.openai, self.http_lib
        where = self.endpoint.url
        if isinstance(exc, (openai.APITimeoutError, http.TimeoutException)):
            connecting = any(isinstance(e, http.ConnectTimeout) for e in _causes(exc))
            seconds, trait = (
                (self.timeouts.connect, "remote_connect_timeout")
                if connecting
                else (self.timeouts.read, "remote_read_timeout")
            )
            return ServerTimeout(
                f"{where} did not answer within {seconds:g} s; is it overloaded? "
                f"(%config LlmMagics.{trait} = … waits longer)"
            )
        if isinstance(exc, (openai.APIConnectionError, http.ConnectError)):
            causes = list(_causes(exc))
            if any(isinstance(e, socket.gaierror) for e in causes):
                return ServerUnreachable(f"Cannot resolve the host name {self.endpoint.host!r} of {where}.")
            if any(isinstance(e, ConnectionRefusedError) for e in causes):
                return ServerUnreachable(
                    f"Nothing answers at {where} (connection refused): is the server running?"
                )
            if any(isinstance(e, (http.RemoteProtocolError, http.ReadError)) for e in causes):
                return ServerDisconnected(
                    f"{where} closed the connection before its answer was complete: did the server stop?"
                )
            return ServerUnreachable(f"Cannot connect to {where} ({type(causes[-1]).__name__}).")
        if isinstance(exc, (http.RemoteProtocolError, http.ReadError)):
            return ServerDisconnected(
                f"{where} closed the connection before its answer was complete: did the server stop?"
            )
        if isinstance(exc, openai.APIStatusError):
            return self.status_error(
                exc.status_code, exc.body, "", code=getattr(exc, "code", None), bad_request=bad_request
            )
        if isinstance(exc, openai.APIResponseValidationError):
            return NotOpenAICompatible(f"{where} answered something not shaped like OpenAI's API.")
        if isinstance(exc, openai.APIError):
            # An {"error": …} event in the middle of a stream.
            return ServerRejected(
                f"{where} reported an error: {_server_message(exc.body, exc.message, self.redact)}"
            )
        if isinstance(exc, UnicodeDecodeError):
            # openai's event decoder reads each line as strict UTF-8.
            return NotOpenAICompatible(f"{where} sent bytes that are not UTF-8 text in its answer.")
        if isinstance(exc, (json.JSONDecodeError, http.DecodingError)):
            return NotOpenAICompatible(f"{where} sent something that is not JSON in its answer.")
        if isinstance(exc, http.HTTPError):
            return ServerUnreachable(f"Cannot talk to {where} ({type(exc).__name__}).")
        return None

    def status_error(
        self,
        status: int,
        body: Any,
        path: str,
        code: str | None = None,
        bad_request: Callable[[str], RemoteError] | None = None,
    ) -> RemoteError:
        where = self.endpoint.url
        said = _server_message(body, "", self.redact)
        if status == 400 and bad_request is not None:
            return bad_request(said)
        if status in (401, 403):
            variable = self.key_variable or DEFAULT_KEY_VARIABLE
            problem = "refused the API key" if status == 401 else "does not allow this key"
            if self.key_variable is None:
                problem = "wants an API key"
            return AuthenticationFailed(
                f"{where} {problem} ({status}): set {variable} to a valid key, or name another variable "
                "with --api-key-env."
            )
        if code == "context_length_exceeded" or (
            isinstance(body, dict) and body.get("code") == "context_length_exceeded"
        ):
            return ContextTooLong(f"The prompt and reply do not fit the model's context: {said}")
        if status == 404 and path:
            return ServerRejected(f"{where} has no {path} route (404).")
        if status == 404:
            return ModelNotServed(
                f"{where} answered 404 (not found): {said or 'the model or route is not served'}"
            )
        return ServerRejected(f"{where} refused the request ({status}){': ' + said if said else ''}")


def _json_or_text(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:200]


# --------------------------------------------------------------------------- the engine


__all__ = ["Server"]
