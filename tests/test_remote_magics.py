"""The magics on a remote entry (`%llm_load --endpoint`), against the fake vLLM of
`tests.remote_servers` (fast, and it checks keys): loading and listing, then `%%llm_chat`,
`%%llm_complete`, `%llm_history` and `%tokens` on a remote engine exactly as on a local one."""

from __future__ import annotations

import json
import signal
import threading

from tests.helpers import assert_one_line_error, magics, run, shown_html, shown_text
from tests.remote_servers import FakeVllm, free_port

KEY = "sk-class-secret-0123456789"


def everything_shown(captured) -> str:
    return shown_text(captured) + shown_html(captured) + captured.stderr


# --------------------------------------------------------------------------- loading and listing


def test_load_endpoint_registers_and_shows_the_card(shell, fake: FakeVllm):
    result, captured = run(shell, f"%llm_load --endpoint {fake.url}")
    assert result.success, captured.stderr
    text = shown_text(captured)
    for fragment in (fake.url, "fake/model", "vLLM", "2,048 tokens", "round trip", "/tokenize"):
        assert fragment in text
    assert magics(shell).registry.active_name == "model"
    result, captured = run(shell, "%llm_list")
    assert "fake/model @ " + fake.url in shown_text(captured)


def test_load_endpoint_with_name_and_model(shell, fake: FakeVllm):
    result, captured = run(shell, f"%llm_load fake/model --endpoint {fake.url} --as class")
    assert result.success and "class" in magics(shell).registry


def test_a_wrong_model_is_one_line_and_registers_nothing(shell, fake: FakeVllm):
    result, captured = run(shell, f"%llm_load other/model --endpoint {fake.url}")
    assert_one_line_error(result, captured, "ModelNotServed", "fake/model")
    assert len(magics(shell).registry) == 0


def test_nothing_listening_is_one_line(shell):
    result, captured = run(shell, f"%llm_load m --endpoint http://127.0.0.1:{free_port()}/v1")
    assert_one_line_error(result, captured, "ServerUnreachable", "connection refused")


def test_weight_options_make_no_sense_with_an_endpoint(shell, fake: FakeVllm):
    result, captured = run(shell, f"%llm_load --endpoint {fake.url} --quant 4bit")
    assert_one_line_error(result, captured, "InvalidOption", "--quant")
    result, captured = run(shell, "%llm_load gpt2 --api-key-env X")
    assert_one_line_error(result, captured, "InvalidOption", "--endpoint")


def test_the_key_is_never_shown(shell, fake: FakeVllm, monkeypatch):
    fake.api_key = KEY
    monkeypatch.setenv("CLASS_KEY", KEY)
    result, captured = run(shell, f"%llm_load --endpoint {fake.url} --api-key-env CLASS_KEY")
    assert result.success
    assert KEY not in everything_shown(captured) and "$CLASS_KEY" in shown_text(captured)
    result, captured = run(shell, "%llm_list")
    assert KEY not in everything_shown(captured)
    monkeypatch.setenv("CLASS_KEY", "wrong")
    result, captured = run(shell, f"%llm_load --endpoint {fake.url} --api-key-env CLASS_KEY --as again")
    assert_one_line_error(result, captured, "AuthenticationFailed", "CLASS_KEY")


def test_a_failed_reload_leaves_the_entry(shell, fake: FakeVllm):
    run(shell, f"%llm_load --endpoint {fake.url} --as class")
    fake.model = "fake/renamed"
    result, captured = run(shell, f"%llm_load fake/model --endpoint {fake.url} --as class --reload")
    assert not result.success and "class" in magics(shell).registry


def test_tokens_on_a_remote_entry_uses_the_server_today(shell, fake: FakeVllm):
    run(shell, f"%llm_load --endpoint {fake.url}")
    result, captured = run(shell, "%tokens Paris is the capital of France.")
    assert result.success and "Paris" in shown_text(captured)
    assert any(path == "/tokenize" for path, _ in fake.requests)


# --------------------------------------------------------------------------- chat, completion, history, tokens


def test_chat_on_a_remote_entry_streams_with_the_footer(shell, fake: FakeVllm):
    run(shell, f"%llm_load --endpoint {fake.url}")
    result, captured = run(shell, "%%llm_chat --max-new-tokens 5 --out answer\nHi there")
    assert result.success, captured.stderr
    assert shell.user_ns["_llm_reply"] == shell.user_ns["answer"] == "t0 t1 t2 t3 t4 "
    text = shown_text(captured)
    for fragment in ("11 prompt tokens", "5 new tokens", "first token", "length limit"):
        assert fragment in text
    request = [body for path, body in fake.requests if path == "/v1/chat/completions"][-1]
    assert request["messages"][-1] == {"role": "user", "content": "Hi there"}


def test_chat_options_reach_the_server(shell, fake: FakeVllm):
    run(shell, f"%llm_load --endpoint {fake.url}")
    run(
        shell,
        '%%llm_chat --temperature 0.7 --top-p 0.9 --top-k 20 --seed 3 --system "Be brief." --max-new-tokens 4\nHi',
    )
    request = [body for path, body in fake.requests if path == "/v1/chat/completions"][-1]
    assert (request["temperature"], request["top_p"], request["top_k"], request["seed"]) == (0.7, 0.9, 20, 3)
    assert request["messages"][0] == {"role": "system", "content": "Be brief."}
    run(shell, "%%llm_chat --new --max-new-tokens 4\nAgain")
    request = [body for path, body in fake.requests if path == "/v1/chat/completions"][-1]
    assert request["messages"] == [{"role": "user", "content": "Again"}]


def test_the_stop_button_keeps_the_partial_reply(shell, fake: FakeVllm):
    run(shell, f"%llm_load --endpoint {fake.url}")
    fake.stream_tokens, fake.token_delay = 200, 0.05
    threading.Timer(0.5, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
    result, captured = run(shell, "%%llm_chat --max-new-tokens 200\nCount")
    assert_one_line_error(result, captured, "GenerationInterrupted", "partial reply is kept")
    assert shell.user_ns["_llm_reply"].startswith("t0 ")
    assert fake.stream_ended.wait(1.0)


def test_a_server_dying_mid_reply_is_said_and_the_partial_reply_kept(shell, fake: FakeVllm):
    run(shell, f"%llm_load --endpoint {fake.url}")
    fake.mode = "die"
    result, captured = run(shell, "%%llm_chat --max-new-tokens 20\nHi")
    assert not result.success
    assert "closed the connection" in everything_shown(captured)
    assert shell.user_ns["_llm_reply"] == "t0 t1 t2 "


def test_history_save_and_load_on_a_remote_entry(shell, fake: FakeVllm, tmp_path, monkeypatch):
    fake.api_key = KEY
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    run(shell, f"%llm_load --endpoint {fake.url}")
    run(shell, "%%llm_chat --max-new-tokens 3\nFirst")
    path = tmp_path / "chat.json"
    run(shell, f"%llm_history --save {path}")
    saved = path.read_text()
    assert KEY not in saved
    assert [m["role"] for m in json.loads(saved)["messages"]] == ["user", "assistant"]
    run(shell, "%llm_reset")
    run(shell, f"%llm_history --load {path}")
    run(shell, "%%llm_chat --max-new-tokens 3\nSecond")
    request = [body for path_, body in fake.requests if path_ == "/v1/chat/completions"][-1]
    assert [m["content"] for m in request["messages"]] == ["First", "t0 t1 t2 ", "Second"]


def test_complete_on_a_remote_entry(shell, fake: FakeVllm):
    run(shell, f"%llm_load --endpoint {fake.url}")
    result, captured = run(shell, "%%llm_complete --max-new-tokens 4\nOnce upon a time")
    assert result.success and shell.user_ns["_llm_reply"] == "t0 t1 t2 t3 "
    request = [body for path, body in fake.requests if path == "/v1/completions"][-1]
    assert request["prompt"] == "Once upon a time"


def test_tokens_on_a_remote_entry_uses_the_server(shell, fake: FakeVllm):
    run(shell, f"%llm_load --endpoint {fake.url}")
    result, captured = run(shell, "%tokens Paris is the capital of France.")
    assert result.success and "Paris" in shown_text(captured)
    result, captured = run(shell, "%tokens --probs Paris is the capital of France.")
    assert result.success and "perplexity" in shown_text(captured)
    result, captured = run(shell, "%tokens --chat")
    assert result.success and "<|im_start|>" in shown_text(captured)
