"""Hostile model files, with real tiny models: a chat template the sandbox blocks, pickle weights
(harmless and malicious). Each ends in one line, says what it found, and runs no foreign code.

The torch-free battery over every magic is in test_hostile.py.
"""

from __future__ import annotations

import os
import pickle
import shutil
import warnings
from pathlib import Path

import pytest

from llm_magics.errors import ChatTemplateFailed
from tests import factories
from tests.helpers import assert_one_line_error, magics, run, shown_text

#: Templates transformers' sandboxed jinja2 environment refuses, or that fail on their own.
HOSTILE_TEMPLATES = {
    "unsafe attribute": "{{ cycler.__init__.__globals__ }}",
    "unsafe call": "{% for m in messages %}{{ m.content.__class__.__subclasses__() }}{% endfor %}",
    "its own error": "{{ raise_exception('this template refuses everything') }}",
    "syntax error": "{% for m in messages %}{{ m.content }}",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny GPT-2 folders: one per hostile template, one with harmless pickle weights, one whose
    pickle would run `touch MARKER` if anything unpickled it unsafely."""
    import torch
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("hostile_models")
    base = factories.save_tiny_model(root / "base", "gpt2", factories.byte_bpe_tokenizer())
    folders: dict[str, Path] = {}
    for label, template in HOSTILE_TEMPLATES.items():
        folder = root / label.replace(" ", "-")
        shutil.copytree(base, folder)
        tokenizer = factories.byte_bpe_tokenizer()
        tokenizer.chat_template = template
        tokenizer.save_pretrained(folder)
        folders[label] = folder

    pickled = root / "pickled"
    shutil.copytree(base, pickled)
    model = AutoModelForCausalLM.from_pretrained(base)
    # transformers 5 always writes safetensors: the pickle is written as older versions did.
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    folders["pickled"] = pickled

    malicious = root / "malicious"
    shutil.copytree(pickled, malicious)
    marker = root / "MARKER"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"transformer.wte.weight": Payload()}, malicious / "pytorch_model.bin")
    folders["malicious"] = malicious
    # The same payload as a plain pickle (protocol 4, not torch's zip format), as an attacker
    # would more likely write it.
    plain = root / "malicious-plain"
    shutil.copytree(pickled, plain)
    with (plain / "pytorch_model.bin").open("wb") as file:
        pickle.dump({"transformer.wte.weight": Payload()}, file, protocol=4)
    folders["malicious-plain"] = plain
    folders["marker"] = marker
    return folders


# -- 6. a chat template the sandbox blocks -----------------------------------------------------------


@pytest.mark.parametrize("label", list(HOSTILE_TEMPLATES))
def test_a_blocked_chat_template_is_said_at_load_and_one_line_at_chat(shell, models, label):
    result, captured = run(shell, f"%llm_load {models[label]} --as t")
    assert result.success, captured.stderr
    card = shown_text(captured)
    assert "chat template" in card and "cannot render" in card
    engine = magics(shell).registry.get("t")

    result, captured = run(shell, "%%llm_chat --max-new-tokens 8\nHello")
    assert_one_line_error(result, captured, "ChatTemplateFailed", "chat template")
    assert engine.session.conversation.messages == []

    result, captured = run(shell, "%tokens --chat")
    assert_one_line_error(result, captured, "ChatTemplateFailed", "chat template")

    result, captured = run(shell, "%%llm_complete --max-new-tokens 2\nOnce")
    assert result.success, "raw completion needs no template"


def test_encode_messages_maps_the_sandbox_error_by_type():
    from llm_magics.prompts import encode_messages
    from llm_magics.tokens import analyse_chat

    tokenizer = factories.byte_bpe_tokenizer()
    tokenizer.chat_template = HOSTILE_TEMPLATES["unsafe attribute"]
    messages = [{"role": "user", "content": "Hello"}]
    with pytest.raises(ChatTemplateFailed, match="SecurityError") as caught:
        encode_messages(tokenizer, messages)
    assert type(caught.value.__cause__).__name__ == "SecurityError"
    with pytest.raises(ChatTemplateFailed, match="SecurityError"):
        analyse_chat(tokenizer, messages)


def test_a_tokenizer_only_load_says_it_too(shell, models):
    result, captured = run(shell, f"%llm_load {models['unsafe attribute']} --tokenizer-only --as t")
    assert result.success
    assert "cannot render" in shown_text(captured)


# -- 7. pickle weights --------------------------------------------------------------------------------


def test_harmless_pickle_weights_load_with_a_note(shell, models):
    result, captured = run(shell, f"%llm_load {models['pickled']} --as p")
    assert result.success, captured.stderr
    card = shown_text(captured)
    assert "pickle" in card and "safetensors" in card
    assert magics(shell).registry.names() == ["p"]


@pytest.mark.parametrize("folder", ["malicious", "malicious-plain"])
def test_malicious_pickle_weights_are_refused_in_one_line_and_never_run(shell, models, folder):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, captured = run(shell, f"%llm_load {models[folder]} --as evil")
    assert [str(w.message) for w in caught if "pickle" in str(w.message)] == [], "no torch warning lines"
    assert_one_line_error(result, captured, "UnsafeWeights", "weights_only")
    assert "weights_only=False" not in captured.stdout + captured.stderr, "never advise turning it off"
    assert not models["marker"].exists(), "the pickle's code ran"
    assert magics(shell).registry.names() == []


def test_safetensors_weights_get_no_pickle_note(shell, models):
    result, captured = run(shell, f"%llm_load {models['syntax error']} --as s")
    assert result.success
    assert "pickle" not in shown_text(captured)


# -- %tokens with a real tokenizer (on a fake engine): hostile inputs are one line, change nothing ----


@pytest.fixture
def tokenizing(shell):
    from tests.fake_engine import fake_engine

    plain = factories.byte_bpe_tokenizer()
    hostile = factories.byte_bpe_tokenizer()
    hostile.chat_template = HOSTILE_TEMPLATES["unsafe attribute"]
    registry = magics(shell).registry
    registry.add(fake_engine("blocked", tokenizer=hostile))
    registry.add(fake_engine("tok", tokenizer=plain))
    shell.user_ns["test_bad"] = "bad \ud800 text"
    return registry


@pytest.mark.parametrize(
    ("line", "error", "fragment"),
    [
        ("%tokens", "InvalidOption", "Nothing to tokenise"),
        ("%tokens    ", "InvalidOption", "Nothing to tokenise"),
        ("%tokens --chat hello", "InvalidOption", "--chat shows"),
        ("%tokens --chat --probs", "InvalidOption", "--chat shows"),
        ("%tokens --live --compare blocked", "InvalidOption", "--live shows one tokenizer"),
        ("%tokens --probs hello", "NotSupported", "--probs"),
        ("%tokens --compare nosuch hello", "NotLoaded", "'nosuch'"),
        ("%tokens --model '<script>' hello", "NotLoaded", "No model named"),
        ("%tokens --max-tokens 0 hello", "InvalidOption", "--max-tokens"),
        ("%tokens --max-tokens 99999999999999999999999999 {test_bad}", "InvalidOption", "lone surrogate"),
        ("%tokens {test_bad}", "InvalidOption", "lone surrogate"),
        ("%%tokens\nbad {test_bad}", "InvalidOption", "lone surrogate"),
        ("%%tokens --max-tokens -1\nhello", "InvalidOption", "--max-tokens"),
        ("%tokens --model blocked --chat", "ChatTemplateFailed", "SecurityError"),
    ],
)
def test_hostile_tokens_input_is_one_line(shell, tokenizing, line, error, fragment):
    before = (tokenizing.names(), tokenizing.active_name)
    result, captured = run(shell, line)
    assert_one_line_error(result, captured, error, fragment)
    assert (tokenizing.names(), tokenizing.active_name) == before


@pytest.mark.parametrize(
    "text",
    ["<script>alert(1)</script>", "bidi \u202eevil\u202c", "ctrl \x1b[31m\x07", "'", '"', "{unclosed"],
)
def test_odd_text_tokenises_escaped(shell, tokenizing, text):
    from tests.helpers import shown_html

    shell.user_ns["test_text"] = text
    result, captured = run(
        shell, "%%tokens --no-interpolate\n" + text if "{" in text else "%tokens {test_text}"
    )
    assert result.success, captured.stderr
    assert "<script>" not in shown_html(captured)


# -- %llm_load of hostile files and names -----------------------------------------------------------


@pytest.fixture(scope="module")
def odd_folders(tmp_path_factory, models) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("odd_models")
    (root / "bad-config").mkdir()
    (root / "bad-config" / "config.json").write_text("{")
    (root / "unknown-architecture").mkdir()
    (root / "unknown-architecture" / "config.json").write_text('{"model_type": "nosuchmodel"}')
    (root / "deep-config").mkdir()
    (root / "deep-config" / "config.json").write_text("[" * 100_000)
    (root / "garbage.gguf").write_bytes(b"GGUF\x00garbage")
    shutil.copytree(models["pickled"], root / "truncated-pickle")
    (root / "truncated-pickle" / "pytorch_model.bin").write_bytes(b"PK\x03\x04junk")
    # Keyed without dots, which str.format would read as attribute access.
    return {"good": models["syntax error"]} | {path.name.replace(".", "-"): path for path in root.iterdir()}


@pytest.mark.parametrize(
    ("line", "error", "fragment"),
    [
        ("%llm_load {good} --as alpha", "InvalidOption", "already loaded from fake"),
        ("%llm_load {good} --estimate --tokenizer-only", "InvalidOption", "--estimate"),
        ("%llm_load {good} --device-map nonsense --as d", "ModelLoadFailed", "device_map"),
        # Empty values are refused before anything loads, not taken as "the default".
        ('%llm_load {good} --device-map "" --as d', "InvalidOption", "--device-map needs a value"),
        ('%llm_load {good} --quant "" --as d', "InvalidOption", "Unknown --quant ''"),
        ('%llm_load {good} --dtype "" --as d', "InvalidOption", "Unknown --dtype ''"),
        ("%llm_load HuggingFaceTB/does-not-exist", "HubUnreachable", "HF_HUB_OFFLINE"),
        ("%llm_load {bad-config}", "ModelLoadFailed", "Cannot read the config"),
        ("%llm_load {unknown-architecture}", "ModelLoadFailed", "nosuchmodel"),
        pytest.param(
            "%llm_load {deep-config}",
            "ModelLoadFailed",
            "config",
        ),
        pytest.param(
            "%llm_load {garbage-gguf}",
            "ModelLoadFailed",
            "gguf",
        ),
        ("%llm_load {truncated-pickle}", "ModelLoadFailed", "cut short"),
    ],
)
def test_hostile_model_files_are_one_line(shell, odd_folders, line, error, fragment):
    from tests.fake_engine import fake_engine

    registry = magics(shell).registry
    registry.add(fake_engine("alpha"))
    result, captured = run(shell, line.format_map({k: str(v) for k, v in odd_folders.items()}))
    assert_one_line_error(result, captured, error, fragment)
    assert registry.names() == ["alpha"] and registry.active_name == "alpha"
