"""The loading core without IPython: resolving MODEL, choosing dtypes, estimating memory, loading."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from llm_magics.engines.transformers import gguf, versions
from llm_magics.engines.transformers import source as sources
from llm_magics.engines.transformers.gguf import CONVERSION_FORMAT, converted_folder
from llm_magics.engines.transformers.hardware import Hardware, choose_compute_dtype
from llm_magics.engines.transformers.loading import load_model
from llm_magics.engines.transformers.memory import check_fits, estimate_memory
from llm_magics.engines.transformers.plan import compute_dtype_note, plan_load
from llm_magics.engines.transformers.quantization import quantization_config
from llm_magics.engines.transformers.source import SourceKind, resolve_source
from llm_magics.errors import (
    HubUnreachable,
    InsufficientMemory,
    InvalidOption,
    ModelLoadFailed,
    ModelNotFound,
    QuantizationUnavailable,
    TransformersUnsupported,
)

CPU = Hardware("cpu")


# ------------------------------------------------------------------ resolving MODEL


def test_no_model_means_the_bundled_gguf(bundled_gguf):
    source = resolve_source(None)
    assert (source.kind, source.name, source.path, source.bundled) == (
        SourceKind.GGUF,
        "smollm2-135m",
        bundled_gguf,
        True,
    )
    assert resolve_source("SmolLM2-135M").path == bundled_gguf


def test_alias_falls_back_to_the_hub_id_without_the_bundled_package(monkeypatch):
    monkeypatch.setattr(sources, "bundled_gguf_path", lambda: None)
    source = resolve_source(None)
    assert (source.kind, source.hub_id, source.name) == (
        SourceKind.HUB,
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "smollm2-135m",
    )


def test_folder_gguf_file_and_hub_id(tiny_models, bundled_gguf):
    folder = resolve_source(str(tiny_models["qwen2"]))
    assert (folder.kind, folder.name) == (SourceKind.FOLDER, "tiny-qwen2")
    gguf = resolve_source(str(bundled_gguf))
    assert (gguf.kind, gguf.name) == (SourceKind.GGUF, "SmolLM2-135M-Instruct.Q4_1")
    hub = resolve_source("Qwen/Qwen2.5-0.5B-Instruct")
    assert (hub.kind, hub.hub_id, hub.name) == (
        SourceKind.HUB,
        "Qwen/Qwen2.5-0.5B-Instruct",
        "Qwen2.5-0.5B-Instruct",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("./does-not-exist", "No such file or folder"),
        ("/tmp/nowhere/model.gguf", "No such file or folder"),
        ("not a model!", "is not a model"),
        ("$folder", r"write \{folder\} to use the variable"),
    ],
)
def test_unloadable_names_say_why(text, expected):
    with pytest.raises(ModelNotFound, match=expected):
        resolve_source(text)


def test_folder_without_config_and_non_gguf_file(tmp_path):
    with pytest.raises(ModelNotFound, match="no config.json"):
        resolve_source(str(tmp_path))
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hi")
    with pytest.raises(ModelNotFound, match="not a .gguf"):
        resolve_source(str(text_file))


# ------------------------------------------------------------------ dtypes for the hardware


@pytest.mark.parametrize(
    ("hardware", "dtype"),
    [
        (Hardware("cuda", cuda_capability=(7, 5), cuda_name="Tesla T4"), "float16"),
        (Hardware("cuda", cuda_capability=(8, 0), cuda_name="A100"), "bfloat16"),
        (Hardware("cuda", cuda_capability=(9, 0), cuda_name="H200"), "bfloat16"),
        (Hardware("cpu", cpu_bf16=True), "bfloat16"),
        (Hardware("cpu", cpu_bf16=False), "float32"),
        (Hardware("mps"), "float16"),
    ],
)
def test_compute_dtype_follows_the_hardware(hardware, dtype):
    assert choose_compute_dtype(hardware)[0] == dtype


def test_t4_gets_float16_even_if_torch_claims_bf16_support():
    plan = plan_load(
        resolve_source(None), quantization="4bit", hardware=Hardware("cuda", cuda_capability=(7, 5))
    )
    assert plan.dtype == "float16"
    assert plan.device_map == "auto"
    assert "7.5" in plan.dtype_reason


def test_explicit_dtype_wins_and_cpu_gets_a_cpu_map():
    plan = plan_load(resolve_source(None), dtype="float32", hardware=Hardware("cpu", cpu_bf16=True))
    assert (plan.dtype, plan.device_map) == ("float32", "cpu")


def test_quantization_config_is_the_tutorials():
    import torch

    plan = plan_load(
        resolve_source(None), quantization="4bit", hardware=Hardware("cuda", cuda_capability=(8, 6))
    )
    config = quantization_config(plan)
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant is True
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    eight = quantization_config(plan_load(resolve_source(None), quantization="8bit", hardware=CPU))
    assert eight.load_in_8bit and not eight.load_in_4bit


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantization": "3bit"}, "Unknown --quant"),
        ({"dtype": "float8"}, "Unknown --dtype"),
        ({"name": "has space"}, "--as"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(InvalidOption, match=message):
        plan_load(resolve_source(None), hardware=CPU, **kwargs)


# ------------------------------------------------------------------ the estimate


def big_config_folder(tmp_path: Path, bytes_in_bf16: float) -> Path:
    """A Llama config (no weights) whose bfloat16 weights would take about `bytes_in_bf16`."""
    from transformers import LlamaConfig

    hidden = 4096
    per_layer = 10 * hidden * hidden  # attention 4h^2 + MLP 3 * h * 2h
    layers = max(1, int(bytes_in_bf16 / 2 / per_layer))
    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
    )
    folder = tmp_path / "big-llama"
    config.save_pretrained(folder)
    return folder


def test_estimate_counts_quantizable_layers_and_orders_modes(tiny_models):
    plan = plan_load(resolve_source(str(tiny_models["llama"])), hardware=Hardware("cpu", cpu_bf16=True))
    estimate = estimate_memory(plan)
    sizes = [estimate.bytes_for(mode) for mode in ("float32", "16-bit", "8bit", "4bit")]
    assert sizes == sorted(sizes, reverse=True)
    assert 0 < estimate.quantizable < estimate.parameters
    assert estimate.available_bytes > 0


def test_estimate_keeps_unquantized_parts_in_float32_on_a_cpu_without_bf16(tiny_models):
    source = resolve_source(str(tiny_models["llama"]))
    with_bf16 = estimate_memory(
        plan_load(source, quantization="4bit", hardware=Hardware("cpu", cpu_bf16=True))
    )
    without = estimate_memory(plan_load(source, quantization="4bit", hardware=CPU))
    rest = without.parameters - without.quantizable
    assert (without.rest_dtype, with_bf16.rest_dtype) == ("float32", "bfloat16")
    assert without.bytes_for("4bit") - with_bf16.bytes_for("4bit") == 2 * rest


def test_too_large_a_model_is_refused_with_a_suggestion(tmp_path):
    import psutil

    available = psutil.virtual_memory().available
    folder = big_config_folder(tmp_path, bytes_in_bf16=1.5 * available)
    plan = plan_load(resolve_source(str(folder)), dtype="bfloat16", hardware=CPU)
    estimate = estimate_memory(plan)
    assert estimate.bytes_for("16-bit") > available
    with pytest.raises(
        InsufficientMemory, match=r"needs ~[\d.]+ GB in bfloat16, [\d.]+ GB available system RAM; try --quant"
    ):
        check_fits(plan, estimate)


# ------------------------------------------------------------------ loading


def test_bitsandbytes_missing_is_one_clear_line(tiny_models, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    plan = plan_load(resolve_source(str(tiny_models["llama"])), quantization="4bit", hardware=CPU)
    with pytest.raises(QuantizationUnavailable, match="pip install bitsandbytes"):
        load_model(plan)


def test_bitsandbytes_without_a_cpu_backend(tiny_models, monkeypatch):
    import bitsandbytes

    monkeypatch.setattr(bitsandbytes, "__version__", "0.42.0")
    plan = plan_load(resolve_source(str(tiny_models["llama"])), quantization="8bit", hardware=CPU)
    with pytest.raises(QuantizationUnavailable, match="no CPU backend"):
        load_model(plan)


def test_hub_id_offline_fails_fast():
    plan = plan_load(resolve_source("someone/some-model"), hardware=CPU)
    with pytest.raises(HubUnreachable, match="HF_HUB_OFFLINE"):
        load_model(plan)


def test_hub_unreachable_fails_in_seconds(monkeypatch):
    from huggingface_hub import constants

    # The hub client reads both variables once, at import: its constants are what it then uses.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    plan = plan_load(resolve_source("someone/some-model"), hardware=CPU)
    with pytest.raises(HubUnreachable, match="cannot be reached"):
        load_model(plan)


def test_corrupt_weights_are_a_load_failure(tiny_models, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["llama"], broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(ModelLoadFailed, match="Cannot load"):
        load_model(plan_load(resolve_source(str(broken)), hardware=CPU))


def test_config_of_an_unknown_architecture(tmp_path):
    folder = tmp_path / "weird"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(ModelLoadFailed):
        estimate_memory(plan_load(resolve_source(str(folder)), hardware=CPU))


def test_pad_token_is_set_from_eos(tiny_models):
    entry = load_model(plan_load(resolve_source(str(tiny_models["gpt2"])), hardware=CPU))
    assert entry.tokenizer.pad_token == entry.tokenizer.eos_token == "<|endoftext|>"
    assert entry.model.generation_config.pad_token_id == entry.tokenizer.eos_token_id
    assert entry.describe().has_chat_template is False
    assert entry.describe().context_length == 256


# ------------------------------------------------------------------ older transformers


def test_the_converted_gguf_cache_depends_on_the_transformers_version(bundled_gguf, monkeypatch):
    monkeypatch.setattr(versions, "installed_transformers", lambda: "5.15.0")
    on_colab = converted_folder(bundled_gguf)
    assert converted_folder(bundled_gguf) == on_colab, "the same file and version: the same folder"
    monkeypatch.setattr(versions, "installed_transformers", lambda: "5.24.0")
    assert converted_folder(bundled_gguf) != on_colab
    monkeypatch.setattr(gguf, "CONVERSION_FORMAT", CONVERSION_FORMAT + 1)
    assert len({converted_folder(bundled_gguf), on_colab}) == 2


@pytest.mark.parametrize("installed", ["4.57.6", None])
def test_transformers_older_than_5_or_missing_stops_the_plan(installed, monkeypatch):
    monkeypatch.setattr(versions, "installed_transformers", lambda: installed)
    with pytest.raises(TransformersUnsupported, match=r'%pip install "transformers>=5\.0"'):
        plan_load(resolve_source("someone/some-model"), hardware=CPU)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_estimate_without_transformers_rule_skips_the_same_layers(tiny_models, family, monkeypatch):
    """transformers releases without `get_keys_to_not_convert` get the same estimate from our copy."""
    import transformers.quantizers.base

    plan = plan_load(resolve_source(str(tiny_models[family])), quantization="4bit", hardware=CPU)
    with_rule = estimate_memory(plan)
    monkeypatch.delattr(transformers.quantizers.base, "get_keys_to_not_convert")
    without = estimate_memory(plan)
    assert (without.quantizable, without.per_mode) == (with_rule.quantizable, with_rule.per_mode)


def test_a_t4_card_shows_float16_compute_and_why(tiny_models):
    """What Colab's T4 shows on the card of `%llm_load --quant 4bit` (the lesson's GPU path): the
    weights are loaded on this CPU under the T4's plan, which is the part that decides the line."""
    pytest.importorskip("bitsandbytes")
    from llm_magics.display.cards import ModelCard

    t4 = Hardware("cuda", cuda_capability=(7, 5), cuda_name="Tesla T4")
    source = resolve_source(str(tiny_models["llama"]))
    plan = plan_load(source, quantization="4bit", hardware=t4, device_map="cpu")
    assert compute_dtype_note(plan) == (
        "compute dtype float16: CUDA compute capability 7.5 (< 8.0) has no bfloat16 units"
    )
    # No GPU here to ask for free memory: the T4's 15 GB are not what this test is about.
    engine = load_model(plan, check_memory=False)
    try:
        text = ModelCard(engine.describe())._repr_mimebundle_()["text/plain"]
    finally:
        engine.close()
    assert "compute dtype float16: CUDA compute capability 7.5 (< 8.0) has no bfloat16 units" in text
    assert "4bit nf4" in text
