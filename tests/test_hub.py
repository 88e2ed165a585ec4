"""Models from the hub, through the unmodified `huggingface_hub` client against a loopback hub.

Each case runs its magic lines in a fresh process (tests/hub_session.py) whose `HF_ENDPOINT` points
at the server and whose `HF_HOME` is the test's own cache.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import factories
from tests.hub_server import INVALID_TOKEN, HubState, LoopbackHub

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
GRANTED_TOKEN = "hf_granted_token_for_tests"
UNGRANTED_TOKEN = "hf_ungranted_token_for_tests"


@pytest.fixture(scope="module")
def repos(tmp_path_factory, smollm_tokenizer) -> dict[str, Path]:
    """The repositories the loopback hub serves, by hub id."""
    import torch
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("hub")
    tiny = factories.save_tiny_model(root / "tiny", "llama", smollm_tokenizer)
    sharded = root / "sharded"
    shutil.copytree(tiny, sharded, ignore=shutil.ignore_patterns("model.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(tiny)
    model.save_pretrained(sharded, max_shard_size="5MB")
    pickles = root / "pickles"
    shutil.copytree(tiny, pickles, ignore=shutil.ignore_patterns("model.safetensors"))
    # transformers 5 always writes safetensors: the pickle is written as older versions did.
    torch.save(model.state_dict(), pickles / "pytorch_model.bin")
    malicious = root / "malicious"
    shutil.copytree(pickles, malicious)
    torch.save({"model.embed_tokens.weight": _Payload(root / "MARKER")}, malicious / "pytorch_model.bin")
    no_weights = root / "no-weights"
    shutil.copytree(tiny, no_weights, ignore=shutil.ignore_patterns("model.safetensors"))
    (no_weights / "tiny.Q4_0.gguf").write_bytes(b"GGUF")
    return {
        "acme/tiny": tiny,
        "meta-llama/Tiny-Gated": tiny,
        "acme/tiny-sharded": sharded,
        "acme/tiny-pickles": pickles,
        "acme/tiny-malicious": malicious,
        "acme/tiny-gguf-only": no_weights,
        "acme/tiny-huge": tiny,
        "marker": root / "MARKER",
    }


class _Payload:
    """Pickled, it runs `touch MARKER` when loaded without torch's weights_only check."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def hub(repos):
    state = HubState(repos={name: path for name, path in repos.items() if "/" in name})
    state.gated.add("meta-llama/Tiny-Gated")
    state.granted_tokens.add(GRANTED_TOKEN)
    # A petabyte, as its file list says: no disk here holds it.
    state.claimed_sizes["acme/tiny-huge"] = {"model.safetensors": 10**15}
    with LoopbackHub(state) as server:
        yield server


def start(
    hub: LoopbackHub, home: Path, *lines: str, token: str | None = None, offline: bool = False
) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1"}
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    if token:
        env["HF_TOKEN"] = token
    return subprocess.Popen(
        [sys.executable, "-m", "tests.hub_session", *lines],
        cwd=ROOT if (ROOT / "tests").is_dir() else Path.cwd(),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> list[dict]:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def session(hub: LoopbackHub, home: Path, *lines: str, **options) -> list[dict]:
    return finish(start(hub, home, *lines, **options))


def one_line(seen: dict, error: str, *fragments: str) -> None:
    assert not seen["ok"] and seen["error"] == error, seen
    assert "\n" not in seen["message"]
    for fragment in fragments:
        assert fragment in seen["message"], seen["message"]
    assert seen["registry"] == []


def test_a_hub_model_loads_on_the_first_try_with_the_memory_check_on(hub, tmp_path):
    first, cached = session(hub, tmp_path, "%llm_load acme/tiny", "%llm_load acme/tiny --as again")
    assert first["ok"], first
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(hub.state.downloads)
    assert hub.state.downloads.count("model.safetensors") == 1
    # One status line while downloading, then the card says what came and how long it took.
    shown = first["shown"]
    assert re.search(
        r"downloading model\.safetensors \(6 of 6 files\) · [\d.]+ MB of [\d.]+ MB \d+%", shown
    ), shown
    size = (hub.state.repos["acme/tiny"] / "model.safetensors").stat().st_size
    assert f"of {size / 1e6:,.1f} MB" not in shown  # the total counts every file, not one
    assert re.search(r"downloaded\s+\d+\.\d MB in \d+\.\d s", shown), shown
    # The hub's own bars drew nothing (in Colab they would be a second, widget display).
    assert "it/s" not in shown and "B/s]" not in shown
    assert cached["ok"] and cached["registry"] == ["again", "tiny"], cached
    assert "nothing: every file was in the Hugging Face cache" in cached["shown"]
    # Cached now: it loads with the hub out of the picture.
    sent = hub.state.bytes_sent
    (again,) = session(hub, tmp_path, "%llm_load acme/tiny", offline=True)
    assert again["ok"] and again["registry"] == ["tiny"], again
    assert hub.state.bytes_sent == sent


def test_a_tokenizer_alone_comes_from_the_hub_too(hub, tmp_path):
    (seen,) = session(hub, tmp_path, "%llm_load acme/tiny --tokenizer-only")
    assert seen["ok"] and seen["registry"] == ["tiny"], seen
    assert "model.safetensors" not in hub.state.downloads
    assert "tokenizer.json" in hub.state.downloads


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


def test_shards_pickles_and_repositories_without_weights(hub, repos, tmp_path):
    sharded, pickles, malicious, gguf_only, huge = session(
        hub,
        tmp_path,
        "%llm_load acme/tiny-sharded",
        "%llm_load acme/tiny-pickles",
        "%llm_load acme/tiny-malicious",
        "%llm_load acme/tiny-gguf-only",
        "%llm_load acme/tiny-huge",
    )
    shards = sorted(p.name for p in repos["acme/tiny-sharded"].glob("model-*.safetensors"))
    assert len(shards) > 1 and set(shards) <= set(hub.state.downloads)
    assert sharded["ok"], sharded
    assert f"of {len(shards) + 6} files" in sharded["shown"]  # the index, configs and tokenizer too
    # Pickle weights from the hub take the local folders' safety path: read with weights_only.
    assert pickles["ok"] and "weights are pickles" in pickles["shown"], pickles
    one_line_kept = dict(malicious, registry=[])
    one_line(one_line_kept, "UnsafeWeights", "nothing ran")
    assert not repos["marker"].exists()
    one_line(dict(gguf_only, registry=[]), "NoWeights", "only .gguf files", "hf_hub_download")
    # Refused from the file list, before its weights were asked for.
    one_line(dict(huge, registry=[]), "DiskFull", "needs 1,000,000 GB", str(tmp_path / "hub"), "HF_HOME")
    assert huge["registry"] == gguf_only["registry"] == ["tiny-pickles", "tiny-sharded"]


def test_a_broken_connection_resumes_by_itself_and_when_it_cannot_the_cell_says_run_me_again(hub, tmp_path):
    size = (hub.state.repos["acme/tiny"] / "model.safetensors").stat().st_size
    # Dropped once: the hub client tries again by itself, and it loads.
    hub.state.drop_after = size // 2
    (healed,) = session(hub, tmp_path / "a", "%llm_load acme/tiny")
    assert healed["ok"], healed
    assert hub.state.downloads.count("model.safetensors") == 2
    # Dropped, and every retry refused until a new download starts: one line, nothing registered;
    # running the cell again goes on: the files that finished are not fetched again.
    hub.state.drop_after, hub.state.refuse_resumes = size // 2, True
    hub.state.downloads.clear()
    broken, again = session(hub, tmp_path / "b", "%llm_load acme/tiny", "%llm_load acme/tiny")
    one_line(dict(broken, registry=[]), "DownloadFailed", "run the cell again", "files that finished stay")
    assert broken["registry"] == []
    assert again["ok"] and again["registry"] == ["tiny"], again
    assert hub.state.downloads.count("tokenizer.json") == 1
    assert hub.state.downloads.count("model.safetensors") == 2


def test_an_interrupt_stops_the_download_registers_nothing_and_the_next_load_goes_on(hub, repos, tmp_path):
    shards = sorted(repos["acme/tiny-sharded"].glob("model-*.safetensors"))
    total = sum(p.stat().st_size for p in shards)
    hub.state.bytes_per_second = total / 8  # eight seconds for the weights
    process = start(hub, tmp_path, "%llm_load acme/tiny-sharded", "%llm_list", "%llm_load acme/tiny-sharded")
    deadline = time.monotonic() + 120
    while shards[-1].name not in hub.state.downloads:  # the first shard is in, the last one coming
        assert time.monotonic() < deadline and process.poll() is None, "the download never got there"
        time.sleep(0.05)
    sent_before = hub.state.bytes_sent
    interrupted_at = time.time()
    process.send_signal(signal.SIGINT)
    interrupted, listed, resumed = finish(process)
    assert interrupted["error"] == "KeyboardInterrupt" and interrupted["registry"] == [], interrupted
    assert listed["ok"] and listed["registry"] == []
    assert resumed["ok"] and resumed["registry"] == ["tiny-sharded"], resumed
    # The second load fetched only what the first had not finished.
    assert hub.state.downloads.count(shards[0].name) == 1
    resent = hub.state.bytes_sent - sent_before
    assert resent < total, (resent, total)
    print(
        f"interrupt to cell end: {interrupted['ended_at'] - interrupted_at:.2f} s; "
        f"second load fetched {resent / 1e6:.1f} of {total / 1e6:.1f} MB of weights"
    )


def test_pipelines_tokenizers_and_quantized_loads_take_the_same_path(hub, tmp_path):
    pipe, tokenizer, quantized = session(
        hub,
        tmp_path,
        "%llm_pipe text-generation --model acme/tiny --max-new-tokens 3 Once upon a time",
        "%llm_load meta-llama/Tiny-Gated --tokenizer-only",
        "%llm_load meta-llama/Tiny-Gated --quant 4bit",
    )
    assert pipe["ok"] and "Once upon a time" in pipe["shown"], pipe
    assert "downloading model.safetensors" in pipe["shown"]
    for each in (tokenizer, quantized):
        assert each["error"] == "GatedModel" and "accept its licence" in each["message"], each
