"""The remote engine against a real `transformers serve` on 127.0.0.1 (the bundled model), and
against the small fake vLLM of `tests.remote_servers` for what transformers serve cannot show
(keys, errors mid-stream, a dying connection, non-JSON answers).

Set LLM_MAGICS_REMOTE_ENDPOINT (and LLM_MAGICS_REMOTE_MODEL) to run the real-server tests against
another server, e.g. vLLM on a GPU (benchmarks/gpu_remote_check.sh does).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from llm_magics.conversation import Conversation
from llm_magics.engines.base import Chats, Completes, Engine, ScoresTokens, Tokenizes
from llm_magics.engines.remote import (
    RemoteEngine,
    ServerKind,
    Timeouts,
    connect,
    parse_endpoint,
    probabilities_hint,
    read_api_key,
    read_models,
    token_view_hint,
    transport_warning,
)
from llm_magics.errors import (
    AuthenticationFailed,
    ContextTooLong,
    InvalidOption,
    ModelNotServed,
    NotOpenAICompatible,
    ServerRejected,
    ServerTimeout,
    ServerUnreachable,
)
from llm_magics.values import FinishReason, GenerationOptions
from tests.remote_servers import (
    ENDPOINT_VARIABLE,
    MODEL_VARIABLE,
    FakeVllm,
    Served,
    free_port,
    server_cpu_seconds,
    start_transformers_serve,
)

pytestmark = pytest.mark.slow

EXTERNAL = bool(os.environ.get(ENDPOINT_VARIABLE))


@pytest.fixture(scope="session")
def served_folder(bundled_gguf: Path) -> Path:
    from llm_magics.engines.transformers.gguf import convert_gguf

    return convert_gguf(bundled_gguf)


@pytest.fixture(scope="session")
def served(served_folder: Path, tmp_path_factory: pytest.TempPathFactory):
    """One server for the session: ours (transformers serve), or the one named by the environment."""
    if EXTERNAL:
        yield Served(os.environ[ENDPOINT_VARIABLE], os.environ.get(MODEL_VARIABLE, ""))
        return
    server = start_transformers_serve(served_folder, tmp_path_factory.mktemp("serve") / "serve.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def engine(served: Served):
    engine = connect(served.url, served.model or None, timeouts=Timeouts(5, 120))
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture
def fake(smollm_tokenizer):
    """conftest's fake vLLM with its default 96-token context, so the context checks here bite."""
    server = FakeVllm(smollm_tokenizer).start()
    try:
        yield server
    finally:
        server.stop()


def say(engine: RemoteEngine, message: str, max_new_tokens: int = 12, session=None, **options):
    session = session or engine.session
    prepared = session.prepare(message, max_new_tokens=max_new_tokens)
    seen: list[str] = []
    reply = session.respond(
        prepared, GenerationOptions(max_new_tokens=max_new_tokens, **options), on_text=seen.append
    )
    return reply, seen


# --------------------------------------------------------------------------- no server needed


def test_endpoint_urls_are_normalised_and_checked():
    assert parse_endpoint("http://127.0.0.1:8000/v1/").url == "http://127.0.0.1:8000"
    assert parse_endpoint("https://gpu.example.org/llm/v1").api == "https://gpu.example.org/llm/v1"
    for bad in ("127.0.0.1:8000", "ftp://host/v1", "http://user:pw@host:8000/v1"):
        with pytest.raises(InvalidOption):
            parse_endpoint(bad)


def test_key_comes_from_the_named_variable_or_openai_api_key():
    assert read_api_key(None, {}) == (None, None)
    assert read_api_key(None, {"OPENAI_API_KEY": "k1"}) == ("k1", "OPENAI_API_KEY")
    assert read_api_key("CLASS_KEY", {"CLASS_KEY": "k2", "OPENAI_API_KEY": "k1"}) == ("k2", "CLASS_KEY")
    with pytest.raises(InvalidOption, match="CLASS_KEY"):
        read_api_key("CLASS_KEY", {})


def test_a_key_over_plain_http_to_another_host_is_warned_about():
    assert transport_warning(parse_endpoint("http://10.1.2.3:8000/v1"), True)
    assert transport_warning(parse_endpoint("http://10.1.2.3:8000/v1"), False) is None
    assert transport_warning(parse_endpoint("https://10.1.2.3/v1"), True) is None
    assert transport_warning(parse_endpoint("http://localhost:8000/v1"), True) is None
    assert transport_warning(parse_endpoint("http://[::1]:8000/v1"), True) is None


def test_the_server_kind_is_told_from_its_model_list():
    vllm = {"data": [{"id": "m", "object": "model", "owned_by": "vllm", "max_model_len": 4096}]}
    assert read_models(vllm, "u").kind is ServerKind.VLLM and read_models(vllm, "u").context == {"m": 4096}
    assert read_models({"data": [{"id": "m", "owned_by": "llamacpp"}]}, "u").kind is ServerKind.LLAMA_CPP
    served = {"data": [{"id": "m", "owned_by": "local", "status": {"value": "loaded"}}]}
    assert read_models(served, "u").kind is ServerKind.TRANSFORMERS
    assert read_models({"object": "list", "data": [{"id": "m"}]}, "u").kind is ServerKind.OTHER
    for not_openai in ({"models": ["m"]}, {"data": [{"name": "m"}]}, ["m"], "ok"):
        with pytest.raises(NotOpenAICompatible):
            read_models(not_openai, "u")


def test_connection_refused_is_one_line_in_seconds():
    started = time.monotonic()
    with pytest.raises(ServerUnreachable, match="connection refused"):
        connect(f"http://127.0.0.1:{free_port()}/v1", "m")
    assert time.monotonic() - started < 3


def test_a_server_that_never_answers_times_out_in_seconds():
    import socket

    with socket.socket() as silent:
        # Connections complete in the kernel's backlog; nothing ever reads or answers them.
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ServerTimeout, match="0.5 s"):
            connect(f"http://127.0.0.1:{port}/v1", "m", timeouts=Timeouts(0.5, 0.5))
        assert time.monotonic() - started < 2


def test_unknown_host_is_one_line():
    with pytest.raises(ServerUnreachable, match="resolve"):
        connect("http://no-such-host.invalid:8000/v1", "m", timeouts=Timeouts(2, 2))


# --------------------------------------------------------------------------- a real server


def test_connect_describes_the_server(engine: RemoteEngine, served: Served):
    info = engine.describe()
    details = dict(info.details)
    assert details["endpoint"] == served.url
    assert details["served model"] == engine.model
    assert "ms" in details["round trip"]
    assert details["API key"] == "none"
    assert isinstance(engine, Engine) and isinstance(engine, Chats) and isinstance(engine, Completes)
    if not EXTERNAL:
        assert engine.server_kind is ServerKind.TRANSFORMERS
        assert details["server"] == "transformers serve"
        # transformers serve has no /tokenize and no log-probabilities.
        assert not isinstance(engine, Tokenizes) and not isinstance(engine, ScoresTokens)
        assert "--tokenizer" in details["token view"]
        assert "--tokenizer" in token_view_hint(engine) and "\n" not in token_view_hint(engine)
        assert "vLLM" in probabilities_hint(engine)


def test_one_served_model_may_be_left_out(served: Served):
    engine = connect(served.url)
    try:
        assert engine.model
    finally:
        engine.close()


def test_a_wrong_model_lists_what_is_served(served: Served, engine: RemoteEngine):
    with pytest.raises(ModelNotServed) as caught:
        connect(served.url, "no/such-model")
    assert engine.model in str(caught.value) and "no/such-model" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_chat_streams_counts_and_keeps_the_history(engine: RemoteEngine):
    reply, seen = say(engine, "What is the capital of France?", max_new_tokens=16)
    assert reply.text and seen[-1] == reply.text
    assert all(later.startswith(earlier) for earlier, later in zip(seen, seen[1:], strict=False))
    assert reply.finish_reason in (FinishReason.END_OF_TURN, FinishReason.LENGTH)
    assert reply.stats.prompt_tokens > 5 and 0 < reply.stats.new_tokens <= 16
    assert (
        reply.stats.time_to_first_token is not None and reply.stats.seconds >= reply.stats.time_to_first_token
    )
    messages = engine.session.conversation.messages
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == reply.text

    second, _ = say(engine, "And of Germany?", max_new_tokens=16)
    assert second.stats.prompt_tokens > reply.stats.prompt_tokens + reply.stats.new_tokens - 2
    assert [m["role"] for m in engine.session.conversation.messages] == ["user", "assistant"] * 2


def test_a_length_limit_is_reported(engine: RemoteEngine):
    reply, _ = say(engine, "Write a long poem about the sea.", max_new_tokens=5)
    assert reply.finish_reason is FinishReason.LENGTH and reply.stats.new_tokens == 5


@pytest.mark.skipif(EXTERNAL, reason="compares with the bundled model run here")
def test_greedy_reply_equals_plain_transformers(engine: RemoteEngine, served_folder: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reply, _ = say(engine, "Name a colour.", max_new_tokens=12)
    tokenizer = AutoTokenizer.from_pretrained(served_folder)
    model = AutoModelForCausalLM.from_pretrained(served_folder, dtype=torch.float32)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name a colour."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    expected = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert reply.text == expected


def test_new_session_replace_and_adopt(engine: RemoteEngine):
    fresh = engine.new_session()
    reply, _ = say(engine, "Hi!", session=fresh)
    assert engine.session.conversation.messages == []  # not adopted yet
    engine.adopt(fresh)
    assert engine.session is fresh and fresh.conversation.messages[-1]["content"] == reply.text
    engine.session.replace(
        Conversation([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}])
    )
    assert len(engine.session.conversation.messages) == 2


def test_system_message_is_sent(engine: RemoteEngine):
    prepared = engine.session.prepare("Hi", max_new_tokens=4, system="Answer in French.")
    assert prepared.messages[0] == {"role": "system", "content": "Answer in French."}
    assert engine.session.conversation.messages == []  # prepare changes nothing


def test_completion_continues_raw_text(engine: RemoteEngine):
    seen: list[str] = []
    reply = engine.complete("Once upon a time", GenerationOptions(max_new_tokens=6), on_text=seen.append)
    assert reply.text and not reply.text.startswith("Once upon")
    assert reply.finish_reason in (FinishReason.LENGTH, FinishReason.END_OF_TEXT)
    assert reply.stats.new_tokens <= 6 and seen[-1] == reply.text
    assert engine.session.conversation.messages == []


def test_a_seed_makes_sampling_reproducible(engine: RemoteEngine):
    options = dict(max_new_tokens=6, temperature=1.0, top_p=0.95, seed=7)
    first = engine.complete("My favourite animal is", GenerationOptions(**options))
    second = engine.complete("My favourite animal is", GenerationOptions(**options))
    assert first.text == second.text


def _interrupt_after(pieces: int):
    seen: list[str] = []

    def on_text(text: str) -> None:
        seen.append(text)
        if len(seen) == pieces:
            raise KeyboardInterrupt

    return seen, on_text


def test_interrupt_keeps_the_partial_reply_and_the_server_stops(engine: RemoteEngine, served: Served):
    seen, on_text = _interrupt_after(3)
    prepared = engine.session.prepare("Count from 1 to 500, one number per line.", max_new_tokens=400)
    reply = engine.session.respond(prepared, GenerationOptions(max_new_tokens=400), on_text=on_text)
    assert reply.interrupted and reply.text == seen[-1] and reply.stats.new_tokens >= 1
    assert engine.session.conversation.messages[-1] == {"role": "assistant", "content": reply.text}
    if served.process is not None:
        # Were the server still generating the 400 tokens, it would use a core; it goes idle.
        time.sleep(0.7)
        before = server_cpu_seconds(served)
        time.sleep(1.5)
        assert server_cpu_seconds(served) - before < 0.5
    # And it serves the next request as usual.
    assert say(engine, "Hi", max_new_tokens=3)[0].text


def test_an_interrupt_before_any_text_changes_nothing(fake: FakeVllm):
    engine = connect(fake.url)
    fake.first_delay = 1.5
    threading.Timer(0.3, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
    started = time.monotonic()
    prepared = engine.session.prepare("Hi", max_new_tokens=8)
    reply = engine.session.respond(prepared, GenerationOptions(max_new_tokens=8))
    assert reply.interrupted and reply.empty
    assert time.monotonic() - started < 1.3
    assert engine.session.conversation.messages == []


def test_the_stop_button_closes_the_stream_within_a_second(engine: RemoteEngine):
    """A real SIGINT while the client waits for the next chunk (as the notebook's stop button sends)."""
    sent_at: list[float] = []

    def on_text(text: str) -> None:
        if not sent_at:
            sent_at.append(time.monotonic())
            threading.Timer(0.2, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()

    prepared = engine.session.prepare("Count from 1 to 500, one number per line.", max_new_tokens=400)
    reply = engine.session.respond(prepared, GenerationOptions(max_new_tokens=400), on_text=on_text)
    assert reply.interrupted
    assert time.monotonic() - sent_at[0] < 0.2 + 1.0


@pytest.mark.skipif(EXTERNAL, reason="kills the server it started")
def test_a_server_killed_mid_reply_keeps_the_partial_reply(served_folder: Path, tmp_path: Path):
    doomed = start_transformers_serve(served_folder, tmp_path / "doomed.log")
    try:
        engine = connect(doomed.url, doomed.model)
        seen: list[str] = []

        def on_text(text: str) -> None:
            seen.append(text)
            if len(seen) == 2:
                doomed.kill()

        prepared = engine.session.prepare("Count from 1 to 500, one number per line.", max_new_tokens=300)
        reply = engine.session.respond(prepared, GenerationOptions(max_new_tokens=300), on_text=on_text)
        assert reply.interrupted and reply.text.startswith(seen[1]) and reply.problem
        assert engine.session.conversation.messages[-1]["content"] == reply.text
        started = time.monotonic()
        with pytest.raises(ServerUnreachable):
            say(engine, "Still there?")
        assert time.monotonic() - started < 3
        assert len(engine.session.conversation.messages) == 2  # the failed turn added nothing
    finally:
        doomed.kill()


@pytest.mark.skipif(EXTERNAL, reason="needs the bundled tokenizer folder")
def test_a_local_tokenizer_gives_a_token_view(served: Served, served_folder: Path):
    engine = connect(served.url, served.model, tokenizer=str(served_folder))
    try:
        assert isinstance(engine, Tokenizes) and not isinstance(engine, ScoresTokens)
        assert engine.tokenizer("Hello world")["input_ids"]
        assert "local tokenizer" in dict(engine.describe().details)["token view"]
    finally:
        engine.close()


# --------------------------------------------------------------------------- the fake vLLM


def test_usage_arrives_in_a_chunk_without_choices(fake: FakeVllm):
    engine = connect(fake.url)
    reply, seen = say(engine, "Hi", max_new_tokens=5)
    assert reply.text == "t0 t1 t2 t3 t4 " and len(seen) == 5
    assert (reply.stats.prompt_tokens, reply.stats.new_tokens) == (11, 5)
    assert reply.finish_reason is FinishReason.LENGTH
    request = [body for path, body in fake.requests if path == "/v1/chat/completions"][-1]
    assert request["stream_options"] == {"include_usage": True}
    assert request["max_tokens"] == 5 and request["temperature"] == 0
    assert request["repetition_penalty"] == 1.0  # vLLM takes it in the body


def test_an_interrupt_stops_the_server_writing(fake: FakeVllm):
    fake.max_model_len = 1000
    engine = connect(fake.url)
    fake.stream_tokens, fake.token_delay = 200, 0.02
    seen, on_text = _interrupt_after(3)
    prepared = engine.session.prepare("Hi", max_new_tokens=200)
    reply = engine.session.respond(prepared, GenerationOptions(max_new_tokens=200), on_text=on_text)
    closed_at = time.monotonic()
    assert reply.interrupted and reply.text == "t0 t1 t2 "
    assert fake.stream_ended.wait(1.0), "the server kept streaming after the client closed"
    # At most the token in flight (and one write the kernel accepts before the reset) after closing.
    assert sum(1 for t in fake.writes if t > closed_at) <= 2
    assert len(fake.writes) < 10


def test_an_error_event_mid_stream_keeps_the_partial_reply(fake: FakeVllm):
    engine = connect(fake.url)
    fake.mode = "error"
    reply, _ = say(engine, "Hi", max_new_tokens=20)
    assert reply.interrupted and reply.text == "t0 t1 t2 "
    assert "CUDA out of memory" in reply.problem
    assert engine.session.conversation.messages[-1]["content"] == "t0 t1 t2 "


def test_a_connection_cut_mid_stream_keeps_the_partial_reply(fake: FakeVllm):
    engine = connect(fake.url)
    fake.mode = "die"
    reply, _ = say(engine, "Hi", max_new_tokens=20)
    assert reply.interrupted and reply.text == "t0 t1 t2 " and reply.problem


def test_a_read_timeout_mid_stream_keeps_the_partial_reply(fake: FakeVllm):
    engine = connect(fake.url, timeouts=Timeouts(2, 0.3))
    fake.token_delay = 1.0
    started = time.monotonic()
    reply, _ = say(engine, "Hi", max_new_tokens=5)
    assert reply.interrupted and reply.text == "t0 " and "0.3 s" in reply.problem
    assert time.monotonic() - started < 2


def test_html_instead_of_json_is_one_line(fake: FakeVllm):
    fake.mode = "html"
    with pytest.raises(NotOpenAICompatible, match="not JSON"):
        connect(fake.url)


def test_a_missing_or_wrong_key_names_the_variable_never_the_key(fake: FakeVllm):
    fake.api_key = "sekrit-123"
    with pytest.raises(AuthenticationFailed, match="OPENAI_API_KEY"):
        connect(fake.url, environ={})
    with pytest.raises(AuthenticationFailed, match="CLASS_KEY") as caught:
        connect(fake.url, api_key_env="CLASS_KEY", environ={"CLASS_KEY": "wrong-456"})
    assert "wrong-456" not in str(caught.value) and "401" in str(caught.value)

    engine = connect(fake.url, api_key_env="CLASS_KEY", environ={"CLASS_KEY": "sekrit-123"})
    reply, _ = say(engine, "Hi", max_new_tokens=3)
    assert reply.text
    assert set(fake.auth_headers) == {None, "Bearer wrong-456", "Bearer sekrit-123"}
    shown = (
        repr(engine) + repr(engine.describe()) + repr(engine.session) + engine.session.conversation.to_json()
    )
    assert "sekrit" not in shown and "$CLASS_KEY" in repr(engine.describe())


def test_a_model_gone_from_the_server_lists_what_it_serves(fake: FakeVllm):
    engine = connect(fake.url)
    fake.model = "fake/other"
    with pytest.raises(ModelNotServed, match="fake/other"):
        say(engine, "Hi")
    assert engine.session.conversation.messages == []


def test_the_context_is_checked_before_sending_and_old_turns_dropped(fake: FakeVllm):
    engine = connect(fake.url)
    assert engine.context_window() == 96
    with pytest.raises(ContextTooLong, match="96-token context"):
        engine.session.prepare("word " * 100, max_new_tokens=8)
    engine.session.replace(
        Conversation(
            [{"role": "user", "content": "one " * 40}, {"role": "assistant", "content": "two " * 40}]
        )
    )
    prepared = engine.session.prepare("Hi", max_new_tokens=8)
    assert prepared.dropped_turns == 1 and prepared.messages == [{"role": "user", "content": "Hi"}]


def test_a_server_refusal_is_one_line_and_changes_nothing(fake: FakeVllm):
    engine = connect(fake.url)
    # Sent as is (no trimming) so that the server refuses it: vLLM's 400 for a long prompt.
    from llm_magics.values import PreparedTurn

    turn = PreparedTurn([{"role": "user", "content": "word " * 100}])
    with pytest.raises(ServerRejected, match="maximum context length") as caught:
        engine.session.respond(turn, GenerationOptions(max_new_tokens=8))
    assert "\n" not in str(caught.value)
    assert engine.session.conversation.messages == []


def test_llm_next_on_a_server_without_log_probabilities_says_why(engine: RemoteEngine):
    from llm_magics.errors import NotSupported
    from llm_magics.next_token import next_token_distribution

    if engine.server_kind is ServerKind.VLLM:
        pytest.skip("vLLM gives log-probabilities (test_vllm_next_token_distribution)")
    with pytest.raises(NotSupported, match="runs on a server that gives none") as caught:
        next_token_distribution(engine, "The capital of France is")
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- a real vLLM (GPU script)


@pytest.fixture
def vllm_engine(engine: RemoteEngine) -> RemoteEngine:
    if engine.server_kind is not ServerKind.VLLM:
        pytest.skip("needs a vLLM server (LLM_MAGICS_REMOTE_ENDPOINT; see benchmarks/gpu_remote_check.sh)")
    return engine


def test_vllm_offers_tokens_and_probabilities(vllm_engine: RemoteEngine):
    assert isinstance(vllm_engine, Tokenizes) and isinstance(vllm_engine, ScoresTokens)
    assert vllm_engine.context_window()


def test_vllm_token_view_equals_its_tokenizer(vllm_engine: RemoteEngine):
    from transformers import AutoTokenizer

    from llm_magics.tokens import analyse

    local = AutoTokenizer.from_pretrained(vllm_engine.model)  # vLLM downloaded it into the hub cache
    text = "Emoji 🙂 and accents café naïve, CJK 日本語.\n  def f(x): return x"
    remote_view, local_view = analyse(vllm_engine.tokenizer, text), analyse(local, text)
    assert remote_view.ids == local_view.ids
    assert [(s.start, s.end, s.ids) for s in remote_view.spans] == [
        (s.start, s.end, s.ids) for s in local_view.spans
    ]


def test_vllm_counts_the_prompt_as_its_usage_does(vllm_engine: RemoteEngine):
    prepared = vllm_engine.session.prepare("What is a token?", max_new_tokens=8)
    counted = vllm_engine.count_chat_tokens(prepared.messages)
    reply = vllm_engine.session.respond(prepared, GenerationOptions(max_new_tokens=8))
    assert counted == reply.stats.prompt_tokens


def test_vllm_prompt_probabilities(vllm_engine: RemoteEngine):
    ids = vllm_engine.tokenizer("Paris is the capital of France.")["input_ids"]
    probs = vllm_engine.token_probabilities(ids, top_k=5)
    assert len(probs.probs) == len(ids) and probs.probs[0] is None
    assert all(0 < p <= 1 for p in probs.probs[1:])
    assert all(row and len(row) <= 5 for row in probs.top[1:])
    assert probs.perplexity is not None and 1 <= probs.perplexity < 1e4


def test_vllm_next_token_distribution(vllm_engine: RemoteEngine):
    """%llm_next's numbers from a real vLLM: its top 20 (the default --max-logprobs), sorted, a
    probability each, one line above the cap, and greedy steps that continue as greedy completion does."""
    from llm_magics.errors import LogprobsRefused
    from llm_magics.next_token import next_token_distribution, next_token_steps

    text = "The capital of France is"
    dist = next_token_distribution(vllm_engine, text, show=20, temperature=0.7, top_k=5)
    probs = [c.probability for c in dist.candidates]
    assert dist.partial and dist.known == 20 and len(probs) == 20
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-4
    assert dist.exact_sampling and sum(c.sampled for c in dist.candidates) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(LogprobsRefused, match="--max-logprobs"):
        next_token_distribution(vllm_engine, text, show=21)
    steps = next_token_steps(vllm_engine, text, steps=4)
    reply = vllm_engine.complete(text, GenerationOptions(max_new_tokens=4, temperature=0))
    assert steps.steps[-1].text == reply.text


def test_vllm_seeded_steps_are_drawn_by_the_server_and_repeat(vllm_engine: RemoteEngine):
    """--sample on vLLM: the server draws with a seed per step, so the same seed draws the same
    tokens, and top-k keeps every drawn token among the listed (rank <= k, p sampled exact)."""
    from llm_magics.next_token import next_token_steps

    def run(seed: int):
        return next_token_steps(
            vllm_engine, "Once upon a time", steps=8, sample=True, seed=seed, temperature=1.2, top_k=5
        )

    first = run(7)
    assert [s.id for s in first.steps] == [s.id for s in run(7).steps]
    assert first.exact_sampling and all(s.rank is not None and s.rank <= 5 for s in first.steps)
    assert all(0 < s.sampled <= 1 for s in first.steps)


def test_vllm_llm_next_magic_shows_a_distribution(vllm_engine: RemoteEngine, shell):
    from tests.helpers import run, shown_text

    result, captured = run(
        shell, f"%llm_load {vllm_engine.model} --endpoint {vllm_engine.endpoint.api} --as served"
    )
    assert result.success, captured.stderr
    result, captured = run(shell, "%llm_next --top-k 5 --temperature 0.7 The capital of France is")
    assert result.success, captured.stderr
    text = shown_text(captured)
    assert "listed only its 10 likeliest tokens" in text and "the sampled column is exact" in text
    print(text)  # for the GPU log


def test_without_the_openai_package_the_extra_is_named(monkeypatch):
    import sys

    from llm_magics.errors import RemoteExtraMissing

    monkeypatch.setitem(sys.modules, "openai", None)  # makes `import openai` fail
    with pytest.raises(RemoteExtraMissing, match=r"\[remote\]"):
        connect("http://127.0.0.1:9/v1", "m")
