"""Models from the hub, through the unmodified `huggingface_hub` client against a loopback hub.

Each case runs its magic lines in a fresh process (tests/hub_session.py) whose `HF_ENDPOINT` points
at the server and whose `HF_HOME` is the test's own cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import factories
from tests.hub_server import INVALID_TOKEN, HubState, LoopbackHub

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
GRANTED_TOKEN = "hf_granted_token_for_tests"
UNGRANTED_TOKEN = "hf_ungranted_token_for_tests"


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory, smollm_tokenizer) -> Path:
    return factories.save_tiny_model(tmp_path_factory.mktemp("hub") / "tiny", "llama", smollm_tokenizer)


@pytest.fixture
def hub(tiny_repo):
    state = HubState(repos={"acme/tiny": tiny_repo, "meta-llama/Tiny-Gated": tiny_repo})
    state.gated.add("meta-llama/Tiny-Gated")
    state.granted_tokens.add(GRANTED_TOKEN)
    with LoopbackHub(state) as server:
        yield server


def session(
    hub: LoopbackHub, home: Path, *lines: str, token: str | None = None, offline: bool = False
) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1"}
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    if token:
        env["HF_TOKEN"] = token
    done = subprocess.run(
        [sys.executable, "-m", "tests.hub_session", *lines],
        cwd=ROOT if (ROOT / "tests").is_dir() else Path.cwd(),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def one_line(seen: dict, error: str, *fragments: str) -> None:
    assert not seen["ok"] and seen["error"] == error, seen
    assert "\n" not in seen["message"]
    for fragment in fragments:
        assert fragment in seen["message"], seen["message"]
    assert seen["registry"] == []


def test_a_hub_model_loads_on_the_first_try_with_the_memory_check_on(hub, tmp_path):
    (first,) = session(hub, tmp_path, "%llm_load acme/tiny")
    assert first["ok"], first
    assert first["registry"] == ["tiny"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(hub.state.downloads)
    # Cached now: it loads with the hub out of the picture.
    sent = hub.state.bytes_sent
    (again,) = session(hub, tmp_path, "%llm_load acme/tiny", offline=True)
    assert again["ok"] and again["registry"] == ["tiny"], again
    assert hub.state.bytes_sent == sent


def test_a_tokenizer_alone_comes_from_the_hub_too(hub, tmp_path):
    (seen,) = session(hub, tmp_path, "%llm_load acme/tiny --tokenizer-only")
    assert seen["ok"] and seen["registry"] == ["tiny"], seen
    assert "model.safetensors" not in hub.state.downloads


def test_a_gated_model_without_a_token_says_where_to_accept_and_how_to_give_one(hub, tmp_path):
    (seen,) = session(hub, tmp_path, "%llm_load meta-llama/Tiny-Gated")
    one_line(
        seen, "GatedModel", f"{hub.endpoint}/meta-llama/Tiny-Gated", "HF_TOKEN", "huggingface_hub.login()"
    )
    assert "spelling" not in seen["message"]


def test_a_token_without_access_yet_is_told_so_and_never_shown(hub, tmp_path):
    seen, estimate = session(
        hub,
        tmp_path,
        "%llm_load meta-llama/Tiny-Gated",
        "%llm_load meta-llama/Tiny-Gated --estimate",
        token=UNGRANTED_TOKEN,
    )
    for each in (seen, estimate):
        one_line(each, "GatedModel", "no access", f"{hub.endpoint}/meta-llama/Tiny-Gated")
        assert UNGRANTED_TOKEN not in json.dumps(each)
    assert f"Bearer {UNGRANTED_TOKEN}" in hub.state.authorizations


def test_a_granted_token_loads_the_gated_model(hub, tmp_path):
    (seen,) = session(hub, tmp_path, "%llm_load meta-llama/Tiny-Gated --as gated", token=GRANTED_TOKEN)
    assert seen["ok"] and seen["registry"] == ["gated"], seen
    assert GRANTED_TOKEN not in json.dumps(seen)


def test_an_invalid_token_is_one_line_that_never_shows_it(hub, tmp_path):
    (seen,) = session(hub, tmp_path, "%llm_load acme/tiny", token=INVALID_TOKEN)
    one_line(seen, "HubTokenInvalid", "401", "HF_TOKEN")
    assert INVALID_TOKEN not in json.dumps(seen)


def test_an_unknown_repo_and_an_unknown_revision(hub, tmp_path):
    repo, revision = session(
        hub, tmp_path, "%llm_load acme/missing", "%llm_load acme/tiny --revision no-such-branch"
    )
    one_line(repo, "ModelNotFound", "acme/missing", "spelling")
    one_line(revision, "RevisionNotFound", "'no-such-branch'", f"{hub.endpoint}/acme/tiny")


def test_after_a_refusal_the_same_session_loads_what_it_may(hub, tmp_path):
    refused, loaded = session(hub, tmp_path, "%llm_load meta-llama/Tiny-Gated", "%llm_load acme/tiny")
    one_line(refused, "GatedModel", "accept its licence")
    assert loaded["ok"] and loaded["registry"] == ["tiny"], loaded
    shutil.rmtree(tmp_path, ignore_errors=True)
