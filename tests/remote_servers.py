"""Servers for the remote-engine tests, all on 127.0.0.1: a real `transformers serve`, and a small
fake of vLLM's HTTP API for what transformers serve lacks (`/tokenize`, log-probabilities, keys).

The fake follows vLLM's documented request and response fields, no more:
- `GET /v1/models`: OpenAI's model list; vLLM adds `owned_by: "vllm"` and `max_model_len`
  (vllm/entrypoints/openai/protocol.py, `ModelCard`).
- `POST /tokenize` and `POST /detokenize`: `TokenizeCompletionRequest` (`prompt`,
  `add_special_tokens`, `return_token_strs`), `TokenizeChatRequest` (`messages`,
  `add_generation_prompt`), `TokenizeResponse` (`count`, `max_model_len`, `tokens`, `token_strs`),
  `DetokenizeRequest` (`tokens`) and `DetokenizeResponse` (`prompt`)
  (vllm/entrypoints/serve/tokenize/protocol.py).
- `POST /v1/completions` with `echo`, `logprobs` and `max_tokens=0`: the prompt's log-probabilities
  in OpenAI's legacy `logprobs` object (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`),
  the first token's entries null (vLLM's `echo_without_generation`).
- `POST /v1/completions` with `max_tokens=1` and `logprobs=K` (what `%llm_next` sends): the one
  generated position's K likeliest tokens in the same legacy object, keyed "token_id:N" when
  `return_tokens_as_token_ids` is set (else by decoded text, as vLLM does, so equal texts
  collide), REAL log-probabilities from `lm`, a causal LM run here on the prompt ids; above
  `max_logprobs` (vLLM's `--max-logprobs`, 20 by default) a 400 error, as vLLM's request check gives.
  With `temperature` > 0 the token is DRAWN as vLLM's sampler does: the model's logits through
  temperature, then top-k (vLLM's extra field; 0 or -1 for none), then top-p (transformers' own
  warpers here), drawn with a generator of the request's own seeded with `seed` (vLLM's
  per-request seed: the same seed and prompt draw the same token; none: an unseeded draw). The
  log-probabilities stay raw (before temperature and cuts, vLLM's `raw_logprobs`), and the drawn
  token is listed beside the top K when it is not among them, its own in `token_logprobs[0]`.
- Streams: `data: {chunk}` events, the usage in a last chunk with `choices: []`
  (`stream_options.include_usage`), then `data: [DONE]`; errors as `{"object": "error", "message",
  "type", "code"}` (vLLM's `ErrorResponse`).
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: Set these to run the remote tests against a real server (the GPU script does, with vLLM).
ENDPOINT_VARIABLE = "LLM_MAGICS_REMOTE_ENDPOINT"
MODEL_VARIABLE = "LLM_MAGICS_REMOTE_MODEL"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------- transformers serve


@dataclass
class Served:
    """A running server: its base URL (with /v1), the model id it serves, its process if ours."""

    url: str
    model: str
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """Die at once, as a crashed server does (SIGKILL: no goodbye to open connections)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def transformers_cli() -> list[str]:
    script = Path(sys.executable).with_name("transformers")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from transformers.cli.transformers import main; main()"]


def start_transformers_serve(
    folder: Path,
    log: Path,
    *,
    continuous_batching: bool = False,
    extra: Sequence[str] = (),
    timeout: float = 180.0,
) -> Served:
    """`transformers serve FOLDER` on a free loopback port, once it answers `/health`."""
    import httpx

    port = free_port()
    command = [
        *transformers_cli(),
        "serve",
        str(folder),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--log-level",
        "info",
    ]
    if continuous_batching:
        command.append("--continuous-batching")
    command += list(extra)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    served = Served(f"http://127.0.0.1:{port}/v1", str(folder), process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"transformers serve exited ({process.returncode}):\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    served.kill()
    raise RuntimeError(f"transformers serve did not start within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def server_cpu_seconds(served: Served) -> float:
    """CPU time the server process (and its threads) has used so far."""
    import psutil

    assert served.process is not None
    times = psutil.Process(served.process.pid).cpu_times()
    return float(times.user + times.system)


# --------------------------------------------------------------------------- the fake vLLM


@dataclass
class FakeVllm:
    """What the fake server does and has seen. `tokenizer` is a real fast tokenizer (with a chat
    template) that plays the served model's. `mode` picks a misbehaviour for streams: "ok",
    "error" (an error event after three tokens), "die" (the connection cut after three tokens),
    "html" (a web page instead of JSON everywhere). `lm` is a transformers causal LM over the same
    tokenizer, for next-token log-probabilities (None: that request fails)."""

    tokenizer: Any
    lm: Any = None
    max_logprobs: int = 20
    owned_by: str = "vllm"
    model: str = "fake/model"
    max_model_len: int = 96
    api_key: str | None = None
    mode: str = "ok"
    #: Whether chat streams carry `logprobs.content` when asked (`logprobs`, `top_logprobs`).
    chat_logprobs: bool = True
    stream_tokens: int = 40
    token_delay: float = 0.02
    first_delay: float = 0.0
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)
    # Per stream: when each token was written, and when the handler stopped writing.
    writes: list[float] = field(default_factory=list)
    stream_ended: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def start(self) -> FakeVllm:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # As asyncio servers (uvicorn) do: without it a kept-alive connection waits for the client's delayed
                # ACK (40 ms on Linux) between two small writes, which no real server makes you pay.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:
                fake.handle(self, "GET", {})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.handle(self, "POST", body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- routing --------------------------------------------------------------------------------

    def handle(self, request: BaseHTTPRequestHandler, method: str, body: dict[str, Any]) -> None:
        path = request.path
        self.requests.append((path, body))
        self.auth_headers.append(request.headers.get("authorization"))
        if self.mode == "html":
            return self.send(request, 200, "<html><body>Welcome to nginx!</body></html>", "text/html")
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return self.error(request, 401, "Unauthorized", "AuthenticationError")
        if method == "GET" and path == "/v1/models":
            card = {
                "id": self.model,
                "object": "model",
                "owned_by": self.owned_by,
                "max_model_len": self.max_model_len,
            }
            return self.send_json(request, 200, {"object": "list", "data": [card]})
        if method == "POST" and path == "/tokenize":
            return self.tokenize(request, body)
        if method == "POST" and path == "/detokenize":
            text = self.tokenizer.decode(body["tokens"])
            return self.send_json(request, 200, {"prompt": text})
        if method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
            if body.get("model") != self.model:
                message = f"The model `{body.get('model')}` does not exist."
                return self.error(request, 404, message, "NotFoundError")
            if path == "/v1/completions" and body.get("echo") and body.get("max_tokens") == 0:
                return self.prompt_logprobs(request, body)
            if path == "/v1/completions" and body.get("max_tokens") == 1 and body.get("logprobs") is not None:
                return self.next_logprobs(request, body)
            if "messages" in body:
                prompt = len(self.chat_ids(body["messages"], True))
                wanted = prompt + int(body.get("max_tokens") or 0)
                if wanted > self.max_model_len:
                    message = (
                        f"This model's maximum context length is {self.max_model_len} tokens. However, you "
                        f"requested {wanted} tokens ({prompt} in the messages, {body.get('max_tokens')} in the "
                        "completion). Please reduce the length of the messages or completion."
                    )
                    return self.error(request, 400, message, "BadRequestError")
            if body.get("stream"):
                return self.stream(request, body, chat=path.endswith("chat/completions"))
        return self.error(request, 404, "Not Found", "NotFoundError")

    # -- answers --------------------------------------------------------------------------------

    def tokenize(self, request: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        if "messages" in body:
            ids = self.chat_ids(body["messages"], body.get("add_generation_prompt", True))
        else:
            ids = self.tokenizer(body["prompt"], add_special_tokens=body.get("add_special_tokens", True))[
                "input_ids"
            ]
        answer: dict[str, Any] = {"count": len(ids), "max_model_len": self.max_model_len, "tokens": ids}
        if body.get("return_token_strs"):
            answer["token_strs"] = self.tokenizer.convert_ids_to_tokens(ids)
        self.send_json(request, 200, answer)

    def chat_ids(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> list[int]:
        encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
        return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)

    def prompt_logprobs(self, request: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        ids = body["prompt"]
        k = int(body.get("logprobs") or 0)
        tokens = self.tokenizer.convert_ids_to_tokens(ids)
        # Made-up but well-formed: token i has log-probability -0.5 * i, alternatives below it.
        chosen: list[float | None] = [None] + [-0.5 * i for i in range(1, len(ids))]
        top: list[dict[str, float] | None] = [None]
        for i in range(1, len(ids)):
            row = {tokens[i]: -0.5 * i}
            row.update({f"alt{j}": -0.5 * i - j for j in range(1, k + 1)})
            top.append(row)
        logprobs = {
            "tokens": tokens,
            "token_logprobs": chosen,
            "top_logprobs": top,
            "text_offset": [0] * len(ids),
        }
        choice = {
            "index": 0,
            "text": self.tokenizer.decode(ids),
            "logprobs": logprobs,
            "finish_reason": "length",
        }
        usage = {"prompt_tokens": len(ids), "completion_tokens": 0, "total_tokens": len(ids)}
        answer = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": self.model}
        self.send_json(request, 200, answer | {"choices": [choice], "usage": usage})

    def next_logprobs(self, request: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        import torch

        k = int(body["logprobs"])
        if k > self.max_logprobs:
            message = (
                f"Requested sample logprobs of {k}, which is greater than max allowed: {self.max_logprobs}"
            )
            return self.error(request, 400, message, "BadRequestError")
        if self.lm is None:
            return self.error(
                request, 500, "this fake has no model for log-probabilities", "InternalServerError"
            )
        prompt = body["prompt"]
        ids = list(prompt) if isinstance(prompt, list) else self.tokenizer(prompt)["input_ids"]
        with torch.no_grad():
            logits = self.lm(torch.tensor([ids])).logits[0, -1].float()
        logprobs_all = logits.log_softmax(dim=-1)
        values, indices = torch.topk(logprobs_all, k)
        as_ids = bool(body.get("return_tokens_as_token_ids"))

        def key(token_id: int) -> str:
            return f"token_id:{token_id}" if as_ids else str(self.tokenizer.decode([token_id]))

        top = {key(int(i)): float(v) for i, v in zip(indices, values, strict=True)}
        chosen = self.draw(logits, body) if float(body.get("temperature", 1.0)) > 0 else int(indices[0])
        top.setdefault(key(chosen), float(logprobs_all[chosen]))
        logprobs = {
            "text_offset": [0],
            "token_logprobs": [float(logprobs_all[chosen])],
            "tokens": [key(chosen)],
            "top_logprobs": [top],
        }
        choice = {
            "index": 0,
            "text": self.tokenizer.decode([chosen]),
            "logprobs": logprobs,
            "finish_reason": "length",
        }
        usage = {"prompt_tokens": len(ids), "completion_tokens": 1, "total_tokens": len(ids) + 1}
        answer = {"id": "cmpl-2", "object": "text_completion", "created": 0, "model": self.model}
        self.send_json(request, 200, answer | {"choices": [choice], "usage": usage})

    @staticmethod
    def draw(logits: Any, body: dict[str, Any]) -> int:
        """One token drawn as vLLM's sampler does (temperature, top-k, top-p, then a draw with the
        request's own generator, seeded by its `seed`)."""
        import torch
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        scores = logits.unsqueeze(0)
        none = torch.zeros((1, 1), dtype=torch.long)
        scores = TemperatureLogitsWarper(float(body["temperature"]))(none, scores)
        top_k = int(body.get("top_k") or 0)
        if top_k > 0:
            scores = TopKLogitsWarper(top_k)(none, scores)
        top_p = float(body.get("top_p", 1.0))
        if top_p < 1.0:
            scores = TopPLogitsWarper(top_p)(none, scores)
        generator = torch.Generator()
        if body.get("seed") is not None:
            generator.manual_seed(int(body["seed"]))
        else:
            generator.seed()
        return int(torch.multinomial(scores.softmax(dim=-1), 1, generator=generator)[0, 0])

    def stream(self, request: BaseHTTPRequestHandler, body: dict[str, Any], *, chat: bool) -> None:
        self.writes.clear()
        self.stream_ended.clear()
        request.send_response(200)
        request.send_header("content-type", "text/event-stream")
        request.send_header("transfer-encoding", "chunked")
        request.end_headers()
        kind = "chat.completion.chunk" if chat else "text_completion"
        count = min(self.stream_tokens, int(body.get("max_tokens") or self.stream_tokens))

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            return {"id": "x", "object": kind, "created": 0, "model": self.model, "choices": choices} | extra

        top_logprobs = int(body.get("top_logprobs") or 0) if chat and body.get("logprobs") else 0

        def piece(i: int) -> dict[str, Any]:
            text = f"t{i} "
            if not chat:
                return {"index": 0, "text": text}
            choice: dict[str, Any] = {"index": 0, "delta": {"content": text}}
            if top_logprobs and self.chat_logprobs:
                choice["logprobs"] = {"content": [chat_logprob(i, text, top_logprobs)]}
            return choice

        try:
            if chat:
                self.event(request, chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}]))
            time.sleep(self.first_delay)
            for i in range(count):
                if i == 3 and self.mode == "error":
                    error = {
                        "object": "error",
                        "message": "CUDA out of memory",
                        "type": "InternalServerError",
                    }
                    self.event(request, {"error": error | {"code": 500}})
                    break
                if i == 3 and self.mode == "die":
                    request.wfile.flush()
                    request.connection.shutdown(socket.SHUT_RDWR)
                    request.close_connection = True
                    return
                self.event(request, chunk([piece(i)]))
                self.writes.append(time.monotonic())
                time.sleep(self.token_delay)
            else:
                end = (
                    {"index": 0, "delta": {}, "finish_reason": "length"}
                    if chat
                    else {"index": 0, "text": "", "finish_reason": "length"}
                )
                self.event(request, chunk([end]))
                if (body.get("stream_options") or {}).get("include_usage"):
                    usage = {"prompt_tokens": 11, "completion_tokens": count, "total_tokens": 11 + count}
                    self.event(request, chunk([], usage=usage))
            request.wfile.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
            request.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            request.close_connection = True
        finally:
            self.stream_ended.set()

    @staticmethod
    def event(request: BaseHTTPRequestHandler, data: dict[str, Any]) -> None:
        payload = f"data: {json.dumps(data)}\n\n".encode()
        request.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        request.wfile.flush()

    def error(self, request: BaseHTTPRequestHandler, status: int, message: str, kind: str) -> None:
        self.send_json(request, status, {"object": "error", "message": message, "type": kind, "code": status})

    def send_json(self, request: BaseHTTPRequestHandler, status: int, document: Any) -> None:
        self.send(request, status, json.dumps(document), "application/json")

    @staticmethod
    def send(request: BaseHTTPRequestHandler, status: int, text: str, content_type: str) -> None:
        data = text.encode()
        request.send_response(status)
        request.send_header("content-type", content_type)
        request.send_header("content-length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


def chat_logprob(i: int, text: str, k: int) -> dict[str, Any]:
    """Token i's entry in a chat stream's `logprobs.content`, as vLLM writes it: the token drawn
    (log-probability -0.1·(i+1)) first among its `k` likeliest, then runners-up `r{j}` (each less
    likely), every entry with its UTF-8 bytes."""
    chosen = -0.1 * (i + 1)
    top = [{"token": text, "logprob": chosen, "bytes": list(text.encode())}]
    for j in range(1, k):
        runner = f"r{j} "
        top.append({"token": runner, "logprob": chosen - j, "bytes": list(runner.encode())})
    return {"token": text, "logprob": chosen, "bytes": list(text.encode()), "top_logprobs": top}


def exp(logprob: float) -> float:
    return math.exp(logprob)


# --------------------------------------------------------------------------- a misbehaving server


@dataclass
class Misbehaving:
    """A small OpenAI-shaped server on 127.0.0.1 that misbehaves as `mode` says, every loop bounded
    (at most `limit` seconds of trickling or comments) so that no test can hang:

    - "slow-models": `/v1/models` answers its headers, then one byte each `gap` seconds;
    - "comments": streams only `: keep-alive` comments, one each `gap` seconds;
    - "bad-bytes": streams `good` tokens, then a chunk that is not UTF-8 (`bad_first`: no token before);
    - "halves": streams an emoji as two UTF-16 halves in two chunks, then a lone `\\ud800`;
    - "quote-key": refuses every generation with an error that quotes the Authorization header.
    `ids` are the model ids `/v1/models` lists."""

    mode: str = "ok"
    ids: Sequence[str] = ("m",)
    gap: float = 0.05
    limit: float = 3.0
    good: int = 2
    bad_first: bool = False
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Misbehaving:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.models(self)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    fake.generate(self)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def models(self, request: BaseHTTPRequestHandler) -> None:
        data = json.dumps(
            {"object": "list", "data": [{"id": i, "object": "model"} for i in self.ids]}
        ).encode()
        request.send_response(200)
        request.send_header("content-type", "application/json")
        request.send_header("content-length", str(len(data)))
        request.end_headers()
        if self.mode != "slow-models":
            request.wfile.write(data)
            return
        deadline = time.monotonic() + self.limit
        try:
            for byte in data:
                if time.monotonic() > deadline:
                    break
                request.wfile.write(bytes([byte]))
                request.wfile.flush()
                time.sleep(self.gap)
        except (BrokenPipeError, ConnectionResetError):
            pass
        request.close_connection = True

    def generate(self, request: BaseHTTPRequestHandler) -> None:
        if self.mode == "quote-key":
            said = f"Bad request; headers were: Authorization: {request.headers.get('authorization')}"
            body = json.dumps({"object": "error", "message": said, "type": "BadRequestError", "code": 400})
            data = body.encode()
            request.send_response(400)
            request.send_header("content-type", "application/json")
            request.send_header("content-length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)
            return
        request.send_response(200)
        request.send_header("content-type", "text/event-stream")
        request.send_header("connection", "close")
        request.end_headers()
        request.close_connection = True

        def event(content: str) -> None:
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": self.ids[0]}
            chunk["choices"] = [{"index": 0, "delta": {"content": content}}]
            request.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            request.wfile.flush()

        if self.mode == "comments":
            deadline = time.monotonic() + self.limit
            while time.monotonic() < deadline:
                request.wfile.write(b": keep-alive\n\n")
                request.wfile.flush()
                time.sleep(self.gap)
            return
        if self.mode == "bad-bytes":
            for i in range(0 if self.bad_first else self.good):
                event(f"t{i} ")
            request.wfile.write(b'data: {"choices": [{"delta": {"content": "\xff\xfe"}}]}\n\n')
            request.wfile.flush()
            return
        if self.mode == "halves":
            event("smile ")
            event("\ud83d")
            event("\ude00")
            event(" lone \ud800 end")
        end = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": self.ids[0]}
        end["choices"] = [{"index": 0, "delta": {}, "finish_reason": "stop"}]
        request.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
        request.wfile.flush()
