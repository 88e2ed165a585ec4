"""`%llm_info` and `llm_magics.inside.architecture`: counts equal torch's, repeated layers collapse,
quantized layers are marked by class name, the view is safe, refusals are one line."""

from __future__ import annotations

import torch

from llm_magics.display.architecture import ArchitectureView
from llm_magics.engines.transformers.plan import Quantization
from llm_magics.inside.architecture import describe_model
from tests.helpers import assert_one_line_error, magics, run, shown_html, shown_text
from tests.test_code import execute, printed_code
from tests.test_next_token import TinyEngine, TokenizerOnly


def test_counts_shape_and_collapsed_layers(loaded_tiny):
    model, _ = loaded_tiny("llama")
    arch = describe_model(model, "tiny")
    assert arch.parameters == sum(p.numel() for p in model.parameters())
    assert arch.bytes == sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    base = arch.root.children[0]
    layers = next(block for block in base.children if block.kind == "ModuleList").children
    assert [(b.name, b.repeat) for b in layers] == [("0–1", 2)]
    lm_head = arch.root.children[-1]
    assert lm_head.tied and lm_head.parameters == 0  # tied to the embeddings, counted there
    s = arch.shape
    assert (s.layers, s.heads, s.kv_heads, s.hidden, s.context) == (2, 4, 2, 64, 256)
    assert "float32" in arch.root.dtypes


def test_gpt2_shape_through_its_own_names(loaded_tiny):
    model, _ = loaded_tiny("gpt2")
    arch = describe_model(model)
    assert (arch.shape.layers, arch.shape.heads, arch.shape.hidden) == (2, 4, 64)


def test_quantized_layers_are_marked_by_class_name():
    class Linear4bit(torch.nn.Module):  # what bitsandbytes calls it; bitsandbytes is not needed
        def __init__(self) -> None:
            super().__init__()
            self.in_features, self.out_features = 8, 4
            self.weight = torch.nn.Parameter(torch.zeros(16, 1, dtype=torch.uint8), requires_grad=False)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = Linear4bit()
            self.config = None

    root = describe_model_tree(Net())
    assert root.quantization is Quantization.FOUR_BIT and root.parameters == 32


def describe_model_tree(module):
    from llm_magics.inside.architecture import block_tree

    return block_tree("", module, set())


def test_magic_shows_a_details_tree_and_text(shell, loaded_tiny):
    model, tokenizer = loaded_tiny("llama")
    magics(shell).registry.add(TinyEngine("tiny-<b>", model, tokenizer))
    result, captured = run(shell, "%llm_info")
    assert result.success and result.result is None
    page, text = shown_html(captured), shown_text(captured)
    assert "<details open>" in page and "<script" not in page and "<b>" not in page
    assert "0–1 × 2: LlamaDecoderLayer" in text and "layers 2 · heads 4 · key/value heads 2" in text
    assert text.strip() == ArchitectureView(describe_model(model, "tiny-<b>")).text()


def test_engine_without_a_model_gets_one_line(shell, gpt2_tokenizer):
    magics(shell).registry.add(TokenizerOnly(gpt2_tokenizer))
    result, captured = run(shell, "%llm_info")
    assert_one_line_error(result, captured, "NotSupported", "has no model object")


def test_code_gives_the_same_totals(shell, tiny_models):
    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --dtype float32 --as mine")
    result, captured = run(shell, "%llm_info --code")
    assert result.success, result.error_in_exec
    namespace = execute(printed_code(captured))
    arch = describe_model(magics(shell).registry.get("mine").model)
    assert namespace["parameters"] == arch.parameters and namespace["memory"] == arch.bytes
    assert namespace["shape"]["layers"] == arch.shape.layers
