"""Hostile inputs on the newer features (issue #22): `%llm_next`, `%llm_pipe`, `--compare` and
`--endpoint`, and a small misbehaving server. Each error case is one line and leaves the registry,
every conversation, the namespace and the working folder as they were (`snapshot`)."""

from __future__ import annotations

import copy

import pytest

from llm_magics.conversation import Conversation
from llm_magics.errors import GenerationFailed
from tests.fake_engine import fake_engine
from tests.helpers import assert_one_line_error, magics, run, shown_html, shown_text
from tests.remote_servers import Misbehaving, free_port
from tests.test_hostile import HISTORY, snapshot_of_files

KEY = "sk-hostile-secret-0123456789abcdef"
SECRET = "hunter2-secret-value"


def snapshot(shell, folder):
    registry = magics(shell).registry
    return {
        "names": registry.names(),
        "active": registry.active_name,
        "conversations": {
            e.name: copy.deepcopy(e.session.conversation.messages) for e in registry if hasattr(e, "session")
        },
        "namespace": {n: id(v) for n, v in shell.user_ns.items() if not n.startswith("_i")},
        "files": snapshot_of_files(folder),
    }


def refused(shell, folder, line, error, fragment):
    """Run `line`: one line naming `error` and holding `fragment`, and nothing changed."""
    before = snapshot(shell, folder)
    result, captured = run(shell, line)
    assert_one_line_error(result, captured, error, fragment)
    assert snapshot(shell, folder) == before
    return captured


@pytest.fixture
def room(shell, tmp_path, monkeypatch):
    """The working folder, a secret in the namespace, and two fake chat models (alpha active)."""
    monkeypatch.chdir(tmp_path)
    registry = magics(shell).registry
    beta, alpha = fake_engine("beta"), fake_engine("alpha")
    registry.add(beta)
    registry.add(alpha)
    alpha.session.replace(Conversation(HISTORY))
    shell.user_ns["test_secret"] = SECRET
    shell.user_ns["test_bad"] = "bad \ud800 text"
    return alpha, beta


BAD_TEMPERATURES = ["1e-300", "1e-45", "5e-324", "1e-3", "0.009", "nan", "inf", "-1", "5.5", "1e400"]
BAD_TOP_P = ["0", "-0.5", "1.5", "nan"]


# --------------------------------------------------------------------------- %llm_next

NEXT_CASES = (
    [(f"%llm_next --temperature {t} Hello", "InvalidOption", "--temperature") for t in BAD_TEMPERATURES]
    + [
        (f"%llm_next --steps 3 --sample --seed 1 --temperature {t} Hello", "InvalidOption", "--temperature")
        for t in BAD_TEMPERATURES
    ]
    + [(f"%llm_next --chat -t {t} Hello", "InvalidOption", "--temperature") for t in BAD_TEMPERATURES]
    + [(f"%%llm_next --temperature {t}\nHello", "InvalidOption", "--temperature") for t in BAD_TEMPERATURES]
    + [(f"%llm_next --top-p {p} Hello", "InvalidOption", "--top-p") for p in BAD_TOP_P]
    + [(f"%llm_next --steps 2 --top-p {p} Hello", "InvalidOption", "--top-p") for p in BAD_TOP_P]
    + [
        ("%llm_next --top-k -1 Hello", "InvalidOption", "--top-k"),
        ("%llm_next --top-k 1.5 Hello", "UsageError", "invalid int value"),
        ("%llm_next --show 0 Hello", "InvalidOption", "--show"),
        ("%llm_next --show 100000 Hello", "InvalidOption", "--show"),
        ("%llm_next --show -3 Hello", "InvalidOption", "--show"),
        ("%llm_next --sample Hello", "InvalidOption", "--steps N"),
        ("%llm_next --seed 3 Hello", "InvalidOption", "--steps N"),
        ("%llm_next --live --steps 2 Hello", "InvalidOption", "--live"),
        ("%llm_next --model nosuch Hello", "NotLoaded", "'nosuch'"),
        ("%llm_next --model '<img src=x onerror=alert(1)>' Hello", "NotLoaded", "No model named"),
        ("%llm_next --model alpha Hello", "NotSupported", "alpha"),
        ("%llm_next 'unclosed", "InvalidOption", "No closing quotation"),
        ("%llm_next --steps x Hello", "UsageError", "invalid int value"),
        ("%llm_next {test_bad}", "InvalidOption", "lone surrogate"),
        ("%%llm_next\n{test_bad}", "InvalidOption", "lone surrogate"),
        ("%%llm_next Hello\nand a cell", "InvalidOption", "not both"),
    ]
)


@pytest.fixture
def next_room(room, shell, loaded_tiny):
    from tests.test_next_token import TinyEngine

    model, tokenizer = loaded_tiny("llama")
    engine = TinyEngine("tiny", model, tokenizer)
    magics(shell).registry.add(engine)
    magics(shell).registry.active_name = "tiny"
    return engine


def test_llm_next_battery_is_big_enough():
    assert len(NEXT_CASES) >= 60


@pytest.mark.parametrize(("line", "error", "fragment"), NEXT_CASES, ids=[c[0][:60] for c in NEXT_CASES])
def test_hostile_llm_next_is_one_line(shell, next_room, tmp_path, line, error, fragment):
    refused(shell, tmp_path, line, error, fragment)
    assert next_room.forward_passes == 0


def test_the_smallest_temperature_samples_real_numbers(shell, next_room):
    """At the floor (0.01) the tiny model's logits / T stay finite: sampled steps, no NaN."""
    result, captured = run(shell, "%llm_next --steps 3 --sample --seed 0 --temperature 0.01 Hello there")
    assert result.success, captured.stderr
    assert "nan" not in shown_text(captured).lower()
    result, captured = run(shell, "%llm_next --temperature 0.01 Hello there")
    assert result.success and "nan" not in shown_text(captured).lower()


# --------------------------------------------------------------------------- every magic's line


def test_every_magic_turns_ipython_expansion_off():
    from llm_magics.magics import LlmMagics

    for kind in ("line", "cell"):
        for name, method in LlmMagics.magics[kind].items():
            assert getattr(getattr(LlmMagics, method), "_ipython_magic_no_var_expand", False), name


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("%%llm_chat --no-interpolate --system 'Never say {test_secret}'\nHi", "Never say {test_secret}"),
        ("%%llm_chat --system '{test_secret.lower()}'\nHi", "{test_secret.lower()}"),
        ("%%llm_chat --system '{__import__(\"os\").getcwd()}'\nHi", '{__import__("os").getcwd()}'),
        ("%%llm_chat --system '$test_secret'\nHi", "$test_secret"),
    ],
)
def test_option_lines_run_no_code(shell, room, line, kept):
    alpha, _ = room
    result, _ = run(shell, line)
    assert result.success
    assert alpha.session.conversation.messages[0] == {"role": "system", "content": kept}


def test_option_values_follow_the_cells_rule(shell, room):
    alpha, _ = room
    assert run(shell, "%%llm_chat --system 'Never say {test_secret}'\nHi")[0].success
    assert alpha.session.conversation.messages[0]["content"] == f"Never say {SECRET}"


# --------------------------------------------------------------------------- --compare

COMPARE_CASES = (
    [
        (f"%%llm_chat --compare beta --temperature {t}\nHi", "InvalidOption", "--temperature")
        for t in BAD_TEMPERATURES
    ]
    + [
        (f"%%llm_chat alpha --compare beta gamma --temperature={t}\nHi", "InvalidOption", "--temperature")
        for t in BAD_TEMPERATURES
    ]
    + [(f"%%llm_chat alpha --compare beta --top-p {p}\nHi", "InvalidOption", "--top-p") for p in BAD_TOP_P]
    + [
        (f"%%llm_chat --compare beta --max-new-tokens {n}\nHi", "InvalidOption", "--max-new-tokens")
        for n in ("0", "-1", "1000001", "99999999999999999999")
    ]
    + [
        (f"%%llm_chat --compare beta --out {name}\nHi", "InvalidOption", "--out")
        for name in ("1x", "print", "In", "__x__", "a.b", "_1", "_ii")
    ]
    + [
        (f"%%llm_chat --compare beta --repetition-penalty {r}\nHi", "InvalidOption", "--repetition-penalty")
        for r in ("0", "11", "nan")
    ]
    + [(f"%%llm_chat --compare beta --seed {s}\nHi", "InvalidOption", "--seed") for s in ("-1", str(2**63))]
    + [
        ("%%llm_chat --compare alpha\nHi", "InvalidOption", "different models"),
        ("%%llm_chat alpha --compare beta beta\nHi", "InvalidOption", "different models"),
        ("%%llm_chat beta --compare alpha beta\nHi", "InvalidOption", "different models"),
        ("%%llm_chat --compare nosuch\nHi", "NotLoaded", "'nosuch'"),
        ("%%llm_chat --compare beta nosuch\nHi", "NotLoaded", "'nosuch'"),
        ("%%llm_chat --compare '<img src=x>'\nHi", "NotLoaded", "No model named"),
        ("%%llm_chat --compare 'be\u202eta'\nHi", "NotLoaded", "\\u202e"),
        ("%%llm_chat --compare\nHi", "UsageError", "expected at least one argument"),
        ("%%llm_chat --compare beta\n   ", "InvalidOption", "The cell is empty"),
        ("%%llm_chat --compare beta\n{test_bad}", "InvalidOption", "lone surrogate"),
        ("%%llm_chat --compare beta --system '{test_bad}'\nHi", "InvalidOption", "lone surrogate"),
        ("%%llm_chat --compare beta --system {test_bad}\nHi", "InvalidOption", "lone surrogate"),
        ("%%llm_chat --compare beta --top-k -2\nHi", "InvalidOption", "--top-k"),
        ("%%llm_chat --compare beta --top-k x\nHi", "UsageError", "invalid int value"),
        ("%%llm_chat --compare beta 'unclosed\nHi", "InvalidOption", "No closing quotation"),
        ("%%llm_complete --compare beta\nOnce", "UsageError", "unrecognized arguments"),
    ]
)


@pytest.fixture
def three(room, shell):
    gamma = fake_engine("gamma", context_length=60)
    registry = magics(shell).registry
    registry.add(gamma)
    registry.active_name = "alpha"
    return (*room, gamma)


def test_compare_battery_is_big_enough():
    assert len(COMPARE_CASES + COMPARE_LATER) >= 60


# A model further along the --compare list refuses: nobody generated, nothing changed.
COMPARE_LATER = [
    (f"%%llm_chat --compare beta gamma --max-new-tokens {n}\n" + "word " * 40, "InvalidOption", "fit")
    for n in (21, 30, 50, 59)
] + [("%%llm_chat --compare beta gamma --max-new-tokens 60\nHi", "InvalidOption", "leaves no room")]


@pytest.mark.parametrize(
    ("line", "error", "fragment"),
    COMPARE_CASES + COMPARE_LATER,
    ids=[c[0][:60] for c in COMPARE_CASES + COMPARE_LATER],
)
def test_hostile_compare_is_one_line(shell, three, tmp_path, line, error, fragment):
    refused(shell, tmp_path, line, error, fragment)
    assert all(engine.calls == 0 for engine in three)


@pytest.mark.parametrize("failing", [1, 2])
def test_a_compared_turn_commits_to_all_or_none(shell, three, tmp_path, failing):
    three[failing].fail_with = GenerationFailed("Out of memory while generating.")
    refused(
        shell,
        tmp_path,
        "%%llm_chat --compare beta gamma --max-new-tokens 20\nHi",
        "GenerationFailed",
        "Out of memory",
    )


def test_compare_with_a_failing_server_changes_no_conversation(shell, room, fake, tmp_path):
    assert run(shell, f"%llm_load --endpoint {fake.url} --as far")[0].success
    magics(shell).registry.active_name = "alpha"
    fake.model = "gone/now"  # the server answers 404 before any text, as a restarted one would
    refused(shell, tmp_path, "%%llm_chat alpha --compare far\nHi", "ModelNotServed", "gone")


# --------------------------------------------------------------------------- %llm_pipe

PIPE_CASES = (
    [
        (f"%llm_pipe {task} --top-k {k} --model {{ner}} Ada went to London", "InvalidOption", "--top-k")
        for task in ("ner", "token-classification", "zero-shot-classification --labels 'a, b'")
        for k in ("1", "2", "0", "-1")
    ]
    + [
        (f"%llm_pipe text-generation --temperature {t} Once", "InvalidOption", "--temperature")
        for t in BAD_TEMPERATURES
    ]
    + [(f"%llm_pipe text-generation --top-p {p} Once", "InvalidOption", "--top-p") for p in BAD_TOP_P]
    + [
        (f"%llm_pipe text-generation --max-new-tokens {n} Once", "InvalidOption", "--max-new-tokens")
        for n in ("0", "-5", "1000001")
    ]
    + [
        (f"%llm_pipe sentiment-analysis --model {{sentiment}} --out {v} Hi", "InvalidOption", "--out")
        for v in ("1x", "print", "Out", "__a__", "_2")
    ]
    + [
        ("%llm_pipe sentiment-analysis --model {sentiment} --labels a,b Hi", "InvalidOption", "--labels"),
        ("%llm_pipe ner --model {ner} --context x Hi", "InvalidOption", "--context"),
        ("%llm_pipe ner --model {ner} --aggregation worst Hi", "InvalidOption", "--aggregation"),
        ("%llm_pipe zero-shot-classification Hi", "InvalidOption", "--labels"),
        ("%llm_pipe zero-shot-classification --labels ' , ' Hi", "InvalidOption", "--labels"),
        ("%llm_pipe zero-shot-classification --labels a --hypothesis-template x Hi", "InvalidOption", "{}"),
        (
            "%llm_pipe sentiment-analysis --model {sentiment} --temperature 1 Hi",
            "InvalidOption",
            "generating",
        ),
        ("%llm_pipe sentiment-analysis --model {sentiment} --seed 1 Hi", "InvalidOption", "generating"),
        ("%llm_pipe sentiment-analysis --model {sentiment} --top-k 0 Hi", "InvalidOption", "--top-k"),
        ("%llm_pipe sentiment-analysis --model {sentiment} --lines Hi", "InvalidOption", "--lines"),
        ("%llm_pipe sentiment-analysis --model {sentiment}", "InvalidOption", "No input"),
        ("%llm_pipe sentiment-analysis --model {sentiment} {test_bad}", "InvalidOption", "lone surrogate"),
        (
            "%%llm_pipe sentiment-analysis --model {sentiment}\nbad {test_bad}",
            "InvalidOption",
            "lone surrogate",
        ),
        (
            "%%llm_pipe sentiment-analysis --model {sentiment} --lines\nok\n{test_bad}",
            "InvalidOption",
            "Line 2",
        ),
        ("%%llm_pipe sentiment-analysis --model {sentiment} --lines\n \n", "InvalidOption", "no lines"),
        ("%%llm_pipe sentiment-analysis --model {sentiment} Hi\ncell", "InvalidOption", "from the cell"),
        ("%llm_pipe question-answering --model {qa} Who is it", "InvalidOption", "--context"),
        ("%llm_pipe no-such-task Hi", "InvalidOption", "no-such-task"),
        # --as names a loaded model: taken, whatever --model says
        ("%llm_pipe sentiment-analysis --as alpha Hi", "InvalidOption", "taken"),
        ("%llm_pipe sentiment-analysis --model {sentiment} --as alpha Hi", "InvalidOption", "taken"),
        ("%llm_pipe ner --model {ner} --as beta Hi", "InvalidOption", "taken"),
        ("%llm_pipe fill-mask --model {mlm} --as alpha Paris is the [MASK].", "InvalidOption", "taken"),
        ("%llm_pipe sentiment-analysis --model {sentiment} --as 'bad name!' Hi", "InvalidOption", "--as"),
        ("%llm_pipe sentiment-analysis --model {sentiment} --as '<img>' Hi", "InvalidOption", "--as"),
        # bounded by the model itself, checked before it runs
        (
            "%llm_pipe fill-mask --model {mlm} --top-k 1000000000 Paris is the [MASK].",
            "InvalidOption",
            "tokens",
        ),
        ("%llm_pipe text-generation --model {gpt2} --max-new-tokens 300 Once", "InvalidOption", "context"),
        (
            "%llm_pipe text-generation --model {gpt2} --max-new-tokens 250 " + "Once " * 10,
            "InvalidOption",
            "context",
        ),
        (
            "%llm_pipe text-generation --model {llama} --max-new-tokens 1000000 Once",
            "InvalidOption",
            "context",
        ),
    ]
)


def test_pipe_battery_is_big_enough():
    assert len(PIPE_CASES) >= 60


@pytest.fixture
def folders(task_models, tiny_models):
    return {k: str(v) for k, v in {**task_models, **tiny_models}.items()}


@pytest.mark.parametrize(("line", "error", "fragment"), PIPE_CASES, ids=[c[0][:60] for c in PIPE_CASES])
def test_hostile_pipe_is_one_line(shell, room, folders, tmp_path, line, error, fragment):
    line = line.format_map({**folders, "test_bad": "{test_bad}"})
    refused(shell, tmp_path, line, error, fragment)


def test_as_with_another_model_never_reruns_the_first(shell, room, folders, tmp_path):
    assert run(shell, f"%llm_pipe sentiment-analysis --model {folders['sentiment']} --as s1 Hi")[0].success
    assert run(shell, f"%llm_pipe sentiment-analysis --model {folders['sentiment']} --as s1 Hi")[0].success
    refused(
        shell,
        tmp_path,
        f"%llm_pipe sentiment-analysis --model {folders['nli']} --as s1 Hi",
        "InvalidOption",
        "taken",
    )


def test_pipe_text_runs_no_code(shell, room, folders):
    result, _ = run(
        shell, f"%llm_pipe sentiment-analysis --model {folders['sentiment']} {{1+1}} and {{test_secret}}"
    )
    assert result.success
    assert magics(shell).registry.names()[-1] == "tiny-sentiment"


# --------------------------------------------------------------------------- --endpoint

URLS = [
    "http://127.0.0.1:abc/v1",
    "http://[zz]/v1",
    "http://[::1/v1",
    "http://127.0.0.1:99999/v1",
    "http://127.0.0.1:-1/v1",
    "http://[::1]x/v1",
    "http://:8000/v1",
    "http:///v1",
    "127.0.0.1:8000/v1",
    "localhost",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "gopher://127.0.0.1/v1",
    "ws://127.0.0.1:8000/v1",
    "http//127.0.0.1/v1",
    "''",
    "'<img src=x onerror=alert(1)>'",
    "'http://a\x1b[31m b/v1'",
]
SECRET_URLS = [
    f"ftp://u:{SECRET}@host/v1",
    f"http://u:{SECRET}@127.0.0.1/v1",
    f"http://{SECRET}@127.0.0.1/v1",
    f"http://127.0.0.1/v1?api_key={SECRET}",
    f"http://127.0.0.1/v1#{SECRET}",
    f"ftp://host/v1?api_key={SECRET}",
    f"http://u:{SECRET}@[zz]/v1",
    f"http://u:{SECRET}@127.0.0.1:abc/v1",
]
ENDPOINT_CASES = (
    [(f"%llm_load --endpoint {url}", "InvalidOption", "--endpoint") for url in URLS]
    + [(f"%llm_load --endpoint {url}", "InvalidOption", "--endpoint") for url in SECRET_URLS]
    + [
        (f"%llm_load --endpoint http://127.0.0.1:1/v1 --as {name}", "InvalidOption", "--as")
        for name in (
            "'bad name!'",
            "'<img src=x>'",
            "'a\x1b[31m'",
            "'al\u202epha'",
            "../x",
            "'a b'",
            "'x;y'",
            "''",
        )
    ]
    + [
        (f"%llm_load --endpoint http://127.0.0.1:1/v1 {flag}", "InvalidOption", flag.split()[0])
        for flag in (
            "--quant 4bit",
            "--dtype float16",
            "--device-map cpu",
            "--revision main",
            "--trust-remote-code",
            "--estimate",
            "--tokenizer-only",
        )
    ]
    + [
        (
            "%llm_load --endpoint http://127.0.0.1:1/v1 --api-key-env TEST_NOT_SET_ANYWHERE",
            "InvalidOption",
            "not set",
        ),
        ('%llm_load --endpoint http://127.0.0.1:1/v1 --api-key-env ""', "InvalidOption", "needs the name"),
        ("%llm_load --endpoint", "UsageError", "expected one argument"),
    ]
)


def test_endpoint_battery_is_big_enough():
    assert len(ENDPOINT_CASES + SERVER_CASES) >= 60


@pytest.mark.parametrize(
    ("line", "error", "fragment"), ENDPOINT_CASES, ids=[c[0][:60] for c in ENDPOINT_CASES]
)
def test_hostile_endpoint_is_one_line_and_shows_no_secret(shell, room, tmp_path, line, error, fragment):
    captured = refused(shell, tmp_path, line, error, fragment)
    assert SECRET not in captured.stdout + captured.stderr


@pytest.fixture
def served(fake, shell, room, monkeypatch):
    """The fake vLLM connected as `far` (with a key), alpha still active for local magics."""
    fake.api_key = KEY
    monkeypatch.setenv("TEST_CLASS_KEY", KEY)
    assert run(shell, f"%llm_load --endpoint {fake.url} --as far --api-key-env TEST_CLASS_KEY")[0].success
    return fake


# On a connected server, each refused before a request is sent.
SERVER_CASES = (
    [(f"%%llm_chat far --temperature {t}\nHi", "InvalidOption", "--temperature") for t in BAD_TEMPERATURES]
    + [
        (f"%%llm_complete far --temperature {t}\nOnce", "InvalidOption", "--temperature")
        for t in BAD_TEMPERATURES[:4]
    ]
    + [
        (f"%llm_next --model far --temperature {t} Hi", "InvalidOption", "--temperature")
        for t in BAD_TEMPERATURES[:4]
    ]
    + [
        ("%%llm_chat far --max-new-tokens 2048\nHi", "InvalidOption", "leaves no room"),
        ("%%llm_chat far --top-p 0\nHi", "InvalidOption", "--top-p"),
    ]
)


@pytest.mark.parametrize(("line", "error", "fragment"), SERVER_CASES, ids=[c[0][:60] for c in SERVER_CASES])
def test_hostile_options_on_a_server_send_nothing(shell, served, tmp_path, line, error, fragment):
    sent = len(served.requests)
    refused(shell, tmp_path, line, error, fragment)
    assert len(served.requests) == sent


@pytest.fixture
def bad():
    servers = []

    def start(mode: str, **kwargs) -> Misbehaving:
        servers.append(Misbehaving(mode, **kwargs).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def _quick(shell):
    shell.run_line_magic("config", "LlmMagics.remote_read_timeout = 0.4")


def test_models_trickled_a_byte_at_a_time_time_out(shell, room, bad, tmp_path):
    _quick(shell)
    server = bad("slow-models", gap=0.05, limit=3)
    refused(shell, tmp_path, f"%llm_load --endpoint {server.url}", "ServerTimeout", "remote_read_timeout")


def test_a_stream_of_comments_only_times_out(shell, room, bad, tmp_path):
    server = bad("comments", gap=0.1, limit=3)
    assert run(shell, f"%llm_load --endpoint {server.url}")[0].success
    _quick(shell)  # after the load: a changed timeout reaches the engine
    refused(shell, tmp_path, "%%llm_chat m\nHi", "ServerTimeout", "remote_read_timeout")


def test_bad_bytes_before_any_text_are_one_line(shell, room, bad, tmp_path):
    server = bad("bad-bytes", bad_first=True)
    assert run(shell, f"%llm_load --endpoint {server.url}")[0].success
    refused(shell, tmp_path, "%%llm_chat m\nHi", "NotOpenAICompatible", "not UTF-8")


def test_bad_bytes_after_text_keep_the_partial_reply(shell, room, bad):
    server = bad("bad-bytes", good=2)
    assert run(shell, f"%llm_load --endpoint {server.url}")[0].success
    result, captured = run(shell, "%%llm_chat m\nHi")
    assert_one_line_error(result, captured, "GenerationInterrupted", "partial reply is kept")
    messages = magics(shell).registry.get("m").session.conversation.messages
    assert messages[-1] == {"role": "assistant", "content": "t0 t1 "}


def test_utf16_halves_are_joined_and_lone_ones_replaced(shell, room, bad, tmp_path):
    server = bad("halves")
    assert run(shell, f"%llm_load --endpoint {server.url}")[0].success
    result, captured = run(shell, "%%llm_chat m --no-stream\nHi")
    assert result.success, captured.stderr
    reply = magics(shell).registry.get("m").session.conversation.messages[-1]["content"]
    assert reply == "smile \U0001f600 lone \ufffd end"
    assert "lone UTF-16 half" in shown_text(captured)
    # The server sent no usage: the footer leaves the prompt's count out rather than show 0.
    assert "prompt token" not in shown_text(captured) and "new tokens" in shown_text(captured)
    assert run(shell, "%llm_history m --save chat.json")[0].success
    assert run(shell, "%%llm_chat m\nAgain")[0].success


def test_a_server_quoting_the_key_never_shows_it(shell, room, bad, tmp_path, monkeypatch):
    server = bad("quote-key")
    monkeypatch.setenv("TEST_CLASS_KEY", KEY)
    assert run(shell, f"%llm_load --endpoint {server.url} --api-key-env TEST_CLASS_KEY")[0].success
    captured = refused(shell, tmp_path, "%%llm_chat m\nHi", "ServerRejected", "[API key]")
    assert KEY not in captured.stdout + captured.stderr


def test_ten_thousand_models_make_a_short_line(shell, room, bad, tmp_path):
    server = bad("ok", ids=[f"org/model-{i}" for i in range(10_000)])
    captured = refused(
        shell, tmp_path, f"%llm_load nosuch --endpoint {server.url}", "ModelNotServed", "9,990 more"
    )
    assert len(captured.stdout + captured.stderr) < 1000


@pytest.mark.parametrize(
    "served_id", ["<img src=x onerror=alert(1)>", "a\x1b[31mred", "two words", "al\u202epha"]
)
def test_a_served_id_that_makes_no_name_needs_as(shell, room, bad, tmp_path, served_id):
    server = bad("ok", ids=[served_id])
    refused(shell, tmp_path, f"%llm_load --endpoint {server.url}", "InvalidOption", "--as NAME")
    assert run(shell, f"%llm_load --endpoint {server.url} --as odd")[0].success


@pytest.mark.parametrize("typed", ["--api-key sk-THEKEY123", "--api-key-env hf_THEKEY123"])
def test_a_key_typed_where_its_variable_goes_is_never_shown(shell, room, tmp_path, typed):
    # `--api-key` abbreviates to --api-key-env, so the key itself arrives as the variable's name.
    line = f"%llm_load --endpoint http://127.0.0.1:1/v1 {typed}"
    captured = refused(shell, tmp_path, line, "InvalidOption", "not the key itself")
    assert "THEKEY123" not in shown_text(captured) + captured.stdout + captured.stderr


def test_code_on_a_remote_model_is_the_openai_call(shell, served):
    result, captured = run(
        shell, f"%llm_load --endpoint {served.url} --as far2 --api-key-env TEST_CLASS_KEY --code"
    )
    assert result.success and "client.models.list()" in shown_text(captured)
    assert shown_text(captured).startswith("# The same with the openai client:")
    result, captured = run(shell, "%%llm_chat far --code --max-new-tokens 5\nHi")
    assert result.success
    code = next(
        out.data["text/plain"] for out in captured.outputs if "OpenAI(" in out.data.get("text/plain", "")
    )
    assert code.startswith("# The same with the openai client:")
    compile(code, "<code>", "exec")
    assert "client.chat.completions.create" in code and KEY not in code and "TEST_CLASS_KEY" in code
    assert "AutoModelForCausalLM" not in shown_html(captured)


def test_nothing_listening_changes_nothing(shell, room, tmp_path):
    refused(
        shell,
        tmp_path,
        f"%llm_load --endpoint http://127.0.0.1:{free_port()}/v1",
        "ServerUnreachable",
        "refused",
    )
