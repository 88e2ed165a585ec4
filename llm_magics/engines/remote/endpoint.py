"""Where a server is and how to reach it: its URL checked and shown safely, the API key's
variable, the timeouts, and the one warning about a key sent in the clear."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ...errors import InvalidOption

#: Read when `--api-key-env` is not given, if it is set (as the `openai` client itself does).
DEFAULT_KEY_VARIABLE = "OPENAI_API_KEY"

#: How environment variables are conventionally named. An unset `--api-key-env` value of another
#: shape may be the key itself (`--api-key sk-...` abbreviates to it), so it is never echoed.
_VARIABLE_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a connection, and for each read (the gap between two streamed chunks,
    or a whole non-streamed answer). The openai client's default, 600 s, would freeze a notebook
    for ten minutes on a dead server. Traits: `LlmMagics.remote_connect_timeout`, `remote_read_timeout`."""

    connect: float = 5.0
    read: float = 60.0


DEFAULT_TIMEOUTS = Timeouts()


@dataclass(frozen=True)
class Endpoint:
    """A server's base URL, without the `/v1` suffix (`url`), and what it says about transport."""

    url: str
    host: str
    secure: bool

    @property
    def api(self) -> str:
        return self.url + "/v1"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


#: A host (a name, or an IPv6 address in brackets) and an optional :port, nothing else.
_HOST_AND_PORT = re.compile(r"(\[[^\[\]]*\]|[^\[\]:]*)(:\d*)?")


def _shown_url(url: str) -> str:
    """`url` as it may be shown: without a `user:password@` before the host, a ?query or a #fragment."""
    url = url.strip().partition("#")[0].partition("?")[0]
    scheme, slashes, rest = url.partition("//")
    if not slashes:
        return url
    authority, slash, path = rest.partition("/")
    return f"{scheme}//{authority.rpartition('@')[2]}{slash}{path}"


def parse_endpoint(url: str) -> Endpoint:
    """`http://host:port[/prefix][/v1]` → Endpoint; raises `InvalidOption` for anything else.

    Nothing secret is ever echoed: a refused URL is shown without its user name and password,
    and a query (`?api_key=…`, which the client would drop) is refused without being shown.
    """
    example = "such as http://127.0.0.1:8000/v1"
    try:
        parts = urlsplit(url.strip())
        # urlsplit reads the port lazily: a port that is not a number raises here.
        parts.port  # noqa: B018
        if not _HOST_AND_PORT.fullmatch(parts.netloc.rpartition("@")[2]):
            raise ValueError("text after the host")
    except ValueError:
        raise InvalidOption(
            f"--endpoint {_shown_url(url)!r} is not a URL that can be read (its host in [ ] or "
            f"its :port is malformed): give one {example}."
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidOption(
            f"--endpoint needs an http:// or https:// URL {example}, not {_shown_url(url)!r}."
        )
    if parts.username or parts.password:
        # A URL is shown on the card and in %llm_list: credentials in it would be shown too.
        raise InvalidOption(
            "Put no user name or password in the --endpoint URL: keep the key in an environment "
            "variable and name it with --api-key-env."
        )
    if parts.query or parts.fragment:
        # Requests go to URL + route, so a query would be dropped; if it holds a key, it must not show.
        raise InvalidOption(
            "Put no ?query or #fragment in the --endpoint URL (it would not be sent): keep an API key "
            "in an environment variable and name it with --api-key-env."
        )
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return Endpoint(f"{parts.scheme}://{parts.netloc}{path}", parts.hostname, parts.scheme == "https")


def read_api_key(
    variable: str | None, environ: Mapping[str, str] = os.environ
) -> tuple[str | None, str | None]:
    """(key, the variable it came from). The named variable must be set; without a name,
    `OPENAI_API_KEY` is used when set, else no key."""
    if variable == "":
        raise InvalidOption(
            "--api-key-env needs the name of an environment variable, such as OPENAI_API_KEY."
        )
    if variable is not None:
        value = environ.get(variable)
        if not value and not _VARIABLE_NAME.fullmatch(variable):
            raise InvalidOption(
                "--api-key-env takes the name of an environment variable that holds the key, such as "
                "OPENAI_API_KEY, not the key itself (what was given is not shown; take it out of the "
                "cell): set os.environ['MY_KEY'] = getpass.getpass() and give --api-key-env MY_KEY."
            )
        if not value:
            raise InvalidOption(
                f"--api-key-env {variable}: that environment variable is not set. Set it before starting "
                f"Jupyter, or in the notebook with os.environ[{variable!r}] = getpass.getpass()."
            )
        return value, variable
    value = environ.get(DEFAULT_KEY_VARIABLE)
    return (value, DEFAULT_KEY_VARIABLE) if value else (None, None)


def transport_warning(endpoint: Endpoint, has_key: bool) -> str | None:
    """One line when an API key would travel unencrypted over a network."""
    if has_key and not endpoint.secure and not endpoint.loopback:
        return (
            f"{endpoint.url} is plain http:// on another machine: the API key travels unencrypted. "
            "Use https://, an SSH tunnel to 127.0.0.1, or a network you trust."
        )
    return None


__all__ = [
    "DEFAULT_KEY_VARIABLE",
    "Endpoint",
    "Timeouts",
    "parse_endpoint",
    "read_api_key",
    "transport_warning",
]
