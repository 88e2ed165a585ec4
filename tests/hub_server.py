"""A loopback server that answers what the real `huggingface_hub` client asks of the hub.

Written by hand because no maintained hub mirror serves local folders offline. It serves the
folders it is given as repositories at one commit (under ids with a namespace or without one, as
`gpt2`), and answers as the hub does when a repository, revision or file is missing, when a
repository is gated, and when a token is invalid: `X-Error-Code` headers, which the client turns
into its typed errors.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"
BRANCH = "main"
INVALID_TOKEN = "hf_invalid_token_for_tests"


@dataclass
class HubState:
    """What the server serves, and what it saw (for the tests' assertions)."""

    repos: dict[str, Path] = field(default_factory=dict)
    # Other revisions the server resolves to its one commit: the short commits that transformers
    # pins its pipeline defaults to (`pipeline("sentiment-analysis")` asks for revision 714eb0f).
    revisions: set[str] = field(default_factory=set)
    gated: set[str] = field(default_factory=set)
    # Tokens that may read the gated repositories.
    granted_tokens: set[str] = field(default_factory=set)
    # Sizes the file list claims instead of the real ones ({repo: {file: bytes}}): a model too
    # large for the disk, without writing one.
    claimed_sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    # Slow: at most this many bytes a second for a file's body (None: as fast as it goes).
    bytes_per_second: float | None = None
    # Drop the connection after this many bytes of the next full download of `drop_file`.
    drop_file: str = "model.safetensors"
    drop_after: int | None = None
    # After a drop, refuse the client's retries (GET, with or without Range) until its next HEAD,
    # the start of a new download: they all fail, as when the network is gone.
    refuse_resumes: bool = False
    bytes_sent: int = 0
    downloads: list[str] = field(default_factory=list)
    # (repository, file) of each body sent, and the repository of every request, served or not.
    fetched: list[tuple[str, str]] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    ranges: list[str] = field(default_factory=list)
    authorizations: set[str] = field(default_factory=set)
    refusing: bool = False
    # time.monotonic() of the last byte sent and of the last connection the client closed on us.
    last_sent_at: float = 0.0
    closed_by_client_at: float = 0.0


def _etag(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    state: HubState
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)

    def _refuse(self, status: int, code: str | None, message: str) -> None:
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        data = json.dumps({"error": message}).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        # A HEAD answer has no body: bytes written after it would be read as the next answer.
        if self.command != "HEAD":
            self.wfile.write(data)

    def _token(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if header:
            self.state.authorizations.add(header)
        return header.removeprefix("Bearer ") or None

    def _answer(self, body: bool) -> None:
        path = unquote(urlparse(self.path).path)
        api = path.startswith("/api/models/")
        parts = path.removeprefix("/api/models/" if api else "/").split("/")
        # An id without a namespace (`gpt2`) is one segment; any other is two.
        width = 1 if parts[0] in self.state.repos else 2
        repo_id = "/".join(parts[:width])
        rest = parts[width:]
        self.state.asked.append(repo_id)
        token = self._token()
        if token == INVALID_TOKEN:
            return self._refuse(401, None, "Invalid credentials in Authorization header")
        if repo_id not in self.state.repos:
            return self._refuse(404, "RepoNotFound", "Repository not found")
        if repo_id in self.state.gated and token not in self.state.granted_tokens:
            return self._refuse(403, "GatedRepo", "Access to this model is restricted.")
        folder = self.state.repos[repo_id]
        if api:
            return self._api(folder, repo_id, rest)
        if len(rest) < 3 or rest[0] != "resolve":
            return self._refuse(404, None, "Not found")
        if not self._served(rest[1]):
            return self._refuse(404, "RevisionNotFound", "Invalid rev id")
        file = folder / "/".join(rest[2:])
        if not file.is_file():
            return self._refuse(404, "EntryNotFound", "Entry not found")
        self._file(file, body, repo_id)

    def _served(self, revision: str) -> bool:
        return revision in (BRANCH, COMMIT) or revision in self.state.revisions

    def _api(self, folder: Path, repo_id: str, rest: list[str]) -> None:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        if rest[:1] == ["revision"] and not self._served("".join(rest[1:2])):
            return self._refuse(404, "RevisionNotFound", "Invalid rev id")
        if rest[:1] == ["tree"]:
            if not self._served("".join(rest[1:2])):
                return self._refuse(404, "RevisionNotFound", "Invalid rev id")
            under = folder.joinpath(*rest[2:])
            if not under.is_dir():
                return self._refuse(404, "EntryNotFound", "Entry not found")
            entries = [
                {
                    "type": "file",
                    "path": str(p.relative_to(folder)),
                    "size": p.stat().st_size,
                    "oid": _etag(p),
                }
                for p in files
                if p.parent == under
            ]
            return self._json(entries)
        claimed = self.state.claimed_sizes.get(repo_id, {})
        siblings = [
            {"rfilename": name, "size": claimed.get(name, p.stat().st_size)}
            for p in files
            for name in [str(p.relative_to(folder))]
        ]
        self._json({"id": repo_id, "modelId": repo_id, "sha": COMMIT, "siblings": siblings, "private": False})

    def _json(self, value: object) -> None:
        data = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _file(self, file: Path, body: bool, repo_id: str) -> None:
        if not body:
            self.state.refusing = False
        ranged = self.headers.get("Range", "")
        if body and self.state.refusing:
            return self._hang_up()
        data = file.read_bytes()
        start = 0
        if ranged.startswith("bytes=") and body:
            start = int(ranged.removeprefix("bytes=").split("-")[0] or 0)
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{_etag(file)}"')
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if body:
            self.state.downloads.append(file.name)
            self.state.fetched.append((repo_id, file.name))
            if ranged:
                self.state.ranges.append(f"{file.name} {ranged}")
            self._send(file.name, data[start:], resumed=bool(start))

    def _send(self, name: str, data: bytes, resumed: bool) -> None:
        """The body in 64 KiB pieces, slowed or cut off as the state says."""
        state = self.state
        cut = state.drop_after if name == state.drop_file and not resumed else None
        piece = 64 * 1024
        try:
            for offset in range(0, len(data), piece):
                if cut is not None and offset >= cut:
                    state.drop_after = None
                    state.refusing = state.refuse_resumes
                    return self._hang_up()
                chunk = data[offset : offset + piece]
                self.wfile.write(chunk)
                state.bytes_sent += len(chunk)
                state.last_sent_at = time.monotonic()
                if state.bytes_per_second:
                    time.sleep(len(chunk) / state.bytes_per_second)
        except (BrokenPipeError, ConnectionResetError):
            state.closed_by_client_at = time.monotonic()
            self.close_connection = True

    def _hang_up(self) -> None:
        """Close the connection at once, mid-answer or before one: what a network failure looks like."""
        self.close_connection = True
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)


class LoopbackHub:
    """The server on 127.0.0.1 in a thread; `endpoint` is what `HF_ENDPOINT` takes."""

    def __init__(self, state: HubState) -> None:
        handler = type("Handler", (_Handler,), {"state": state})
        self.state = state
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LoopbackHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
