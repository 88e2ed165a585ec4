"""%llm_load, %llm_list, %llm_use, %llm_unload as a user drives them in a shell."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

import pytest

import llm_magics
from llm_magics.engines.base import HoldsModel
from tests.factories import FAMILIES
from tests.helpers import assert_one_line_error, magics, run, shown_html, shown_text

# ------------------------------------------------------------------ families, quantization, dtypes


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("quant", ["none", "4bit", "8bit"])
def test_every_family_loads_with_every_quantization(shell, tiny_models, family, quant):
    import torch

    result, captured = run(shell, f"%llm_load {tiny_models[family]} --quant {quant} --as t")
    assert result.success, result.error_in_exec
    entry = magics(shell).registry.get("t")
    layer_types = {type(m).__name__ for m in entry.model.modules()}
    expected = {"none": None, "4bit": "Linear4bit", "8bit": "Linear8bitLt"}[quant]
    if expected:
        assert expected in layer_types
        assert entry.describe().quantization.startswith(quant)
    else:
        assert not layer_types & {"Linear4bit", "Linear8bitLt"}
    # The model really runs: one forward pass gives logits over the tokenizer's vocabulary.
    ids = entry.tokenizer("Hello there", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = entry.model(ids).logits
    assert logits.shape[-1] == entry.model.config.vocab_size
    assert torch.isfinite(logits.float()).all()
    assert "Loaded t" in shown_text(captured)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_dtype_is_applied_and_shown(shell, tiny_models, family, dtype):
    result, captured = run(shell, f"%llm_load {tiny_models[family]} --dtype {dtype}")
    assert result.success
    entry = magics(shell).registry.get(f"tiny-{family}")
    assert str(entry.model.dtype) == f"torch.{dtype}"
    assert entry.describe().dtype == dtype
    assert dtype in shown_text(captured)


def test_card_has_the_promised_fields_in_text_and_html(shell, tiny_models):
    _, captured = run(shell, f"%llm_load {tiny_models['qwen2']} --quant 4bit")
    text, page = shown_text(captured), shown_html(captured)
    for field in (
        "name",
        "source",
        "parameters",
        "dtype",
        "quantization",
        "device",
        "memory footprint",
        "load time",
        "context length",
        "chat template",
        "compute dtype",
    ):
        assert field in text
        assert field in page
    assert "<script" not in page


@pytest.mark.skipif(
    not hasattr(__import__("transformers.utils.logging").utils.logging, "set_tqdm_hook"),
    reason="transformers < 5.4 cannot redirect its bars (the next test covers what it shows)",
)
def test_progress_bar_while_loading_then_the_card_in_its_place(shell, tiny_models):
    import re

    _, captured = run(shell, f"%llm_load {tiny_models['llama']}")
    texts = [out.data["text/plain"] for out in captured.outputs]
    assert any(re.search(r"loading weights \d+%", text) for text in texts), texts
    assert any("width:100%" in out.data["text/html"] for out in captured.outputs), "an HTML bar that fills"
    assert all(out.update for out in captured.outputs[1:]), "one output, updated in place"
    assert texts[-1].startswith("Loaded tiny-llama")
    assert "it/s" not in captured.stderr, "no tqdm bars besides ours"


def test_progress_without_transformers_tqdm_hook_shows_the_stage_and_no_bars(shell, tiny_models, monkeypatch):
    """transformers before 5.4 has no set_tqdm_hook: the stage is shown, its bars are turned off."""
    from transformers.utils import logging as hf_logging

    monkeypatch.delattr(hf_logging, "set_tqdm_hook", raising=False)  # absent before 5.4
    hf_logging.enable_progress_bar()
    result, captured = run(shell, f"%llm_load {tiny_models['llama']}")
    assert result.success, result.error_in_exec
    texts = [out.data["text/plain"] for out in captured.outputs]
    assert "Loading tiny-llama: loading weights" in texts, texts
    assert texts[-1].startswith("Loaded tiny-llama")
    assert "it/s" not in captured.stderr and "%|" not in captured.stderr, "no tqdm bars besides ours"
    assert hf_logging.is_progress_bar_enabled(), "the user's setting is restored"


def test_transformers_4_at_llm_load_is_one_line_saying_what_to_install(shell, monkeypatch):

    from llm_magics.engines.transformers import versions

    monkeypatch.setattr(versions, "installed_transformers", lambda: "4.57.6")
    result, captured = run(shell, "%llm_load")
    assert_one_line_error(
        result, captured, "TransformersUnsupported", "transformers 4.57.6 is older than 5.0, the oldest"
    )
    assert '%pip install "transformers>=5.0"' in captured.stdout + captured.stderr
    assert len(magics(shell).registry) == 0


def test_terminal_progress_is_one_line_per_stage(shell, tiny_models):
    formatter = shell.display_formatter
    saved = formatter.active_types
    formatter.active_types = ["text/plain"]  # what terminal IPython shows
    try:
        _, captured = run(shell, f"%llm_load {tiny_models['llama']}")
    finally:
        formatter.active_types = saved
    stages = [out.data["text/plain"] for out in captured.outputs[:-1]]
    assert stages and not any("%" in stage for stage in stages)
    assert len(stages) == len(set(stages)), "each stage once"


def test_bitsandbytes_per_layer_warnings_stay_out_of_the_notebook(shell, tiny_models, capfd):
    import torch

    run(shell, f"%llm_load {tiny_models['llama']} --quant 8bit --dtype bfloat16 --as eight")
    model, tokenizer = llm_magics.get_model("eight")
    with torch.no_grad():
        model.generate(**tokenizer("Hello", return_tensors="pt"), max_new_tokens=3, do_sample=False)
    err = capfd.readouterr().err
    assert "MatMul8bitLt" not in err
    assert "gemm_4bit_forward" not in err


# ------------------------------------------------------------------ the registry


def test_names_active_model_list_and_use(shell, tiny_models):
    run(shell, f"%llm_load {tiny_models['llama']}")
    run(shell, f"%llm_load {tiny_models['gpt2']} --as small")
    registry = magics(shell).registry
    assert registry.names() == ["tiny-llama", "small"]
    assert registry.active_name == "small", "the last loaded model is active"
    _, captured = run(shell, "%llm_list")
    text = shown_text(captured)
    assert "tiny-llama" in text and "small" in text
    assert [line for line in text.splitlines() if line.startswith("*")][0].split()[1] == "small"
    result, _ = run(shell, "%llm_use tiny-llama")
    assert result.success and registry.active_name == "tiny-llama"
    model, tokenizer = llm_magics.get_model()
    assert model is registry.get("tiny-llama").model


def test_loading_a_loaded_name_is_a_no_op_unless_reload(shell, tiny_models):
    run(shell, f"%llm_load {tiny_models['llama']} --as x")
    first = magics(shell).registry.get("x").model
    _, captured = run(shell, f"%llm_load {tiny_models['llama']} --as x --quant 4bit")
    assert "already loaded" in shown_text(captured) and "--reload" in shown_text(captured)
    assert magics(shell).registry.get("x").model is first
    result, _ = run(shell, f"%llm_load {tiny_models['llama']} --as x --quant 4bit --reload")
    assert result.success
    assert magics(shell).registry.get("x").describe().quantization.startswith("4bit")


def test_magics_return_nothing(shell, tiny_models):
    assert shell.run_line_magic("llm_load", f"{tiny_models['llama']}") is None
    assert shell.run_line_magic("llm_list", "") is None
    assert shell.run_line_magic("llm_unload", "--all") is None


def test_tokenizer_only_load(shell, tiny_models):
    result, captured = run(shell, f"%llm_load {tiny_models['gpt2']} --tokenizer-only --as tok")
    assert result.success
    entry = magics(shell).registry.get("tok")
    assert not isinstance(entry, HoldsModel) and entry.tokenizer is not None
    assert llm_magics.get_model("tok") == (None, entry.tokenizer)
    assert entry.describe().context_length == 256, "read from the config, for the context bar of %tokens"
    assert "tokenizer only" in shown_text(captured)


def test_tokenizer_only_from_a_folder_with_just_a_tokenizer(shell, gpt2_tokenizer, tmp_path):
    folder = tmp_path / "just-a-tokenizer"
    gpt2_tokenizer.save_pretrained(folder)
    result, captured = run(shell, f"%llm_load {folder}")
    assert_one_line_error(result, captured, "ModelNotFound", "add --tokenizer-only")
    result, _ = run(shell, f"%llm_load {folder} --tokenizer-only")
    assert result.success
    assert magics(shell).registry.get("just-a-tokenizer").tokenizer("hello")["input_ids"]


def test_trust_remote_code_says_what_it_allows(shell, tiny_models):
    _, captured = run(shell, f"%llm_load {tiny_models['llama']} --trust-remote-code")
    assert "runs Python code from the model's repository" in shown_text(captured)


# ------------------------------------------------------------------ freeing memory


def test_unload_frees_the_model(shell, tiny_models):
    run(shell, f"%llm_load {tiny_models['llama']} --as a")
    run(shell, f"%llm_load {tiny_models['qwen2']} --as b")
    alive = weakref.ref(magics(shell).registry.get("a").model)
    result, captured = run(shell, "%llm_unload a")
    assert result.success
    assert "Unloaded a" in shown_text(captured)
    gc.collect()
    assert alive() is None, "the registry must hold the only reference"
    assert magics(shell).registry.names() == ["b"]
    run(shell, "%llm_unload --all")
    assert len(magics(shell).registry) == 0


def _rss() -> int:
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss


@pytest.mark.slow
def test_unload_returns_process_memory(shell):
    run(shell, "%llm_load --as warm")  # first load converts the GGUF and warms imports
    run(shell, "%llm_unload warm")
    before = _rss()
    run(shell, "%llm_load --dtype bfloat16 --as big")
    footprint = magics(shell).registry.get("big").describe().footprint_bytes
    loaded = _rss()
    run(shell, "%llm_unload big")
    after = _rss()
    assert loaded - before > 0.7 * footprint, "the measurement must see the model"
    assert after - before < 0.5 * footprint, f"{(after - before) / 1e6:.0f} MB still held after unload"


@pytest.mark.slow
def test_a_leaked_reference_is_caught_by_the_memory_measure(shell):
    """The check above can fail: a reference kept outside the registry keeps the memory."""
    run(shell, "%llm_load --as warm")
    run(shell, "%llm_unload warm")
    before = _rss()
    run(shell, "%llm_load --dtype bfloat16 --as leaky")
    leaked, _ = llm_magics.get_model("leaky")
    footprint = magics(shell).registry.get("leaky").describe().footprint_bytes
    run(shell, "%llm_unload leaky")
    assert _rss() - before > 0.7 * footprint
    del leaked


def test_unload_ext_frees_everything(shell, tiny_models):
    run(shell, f"%llm_load {tiny_models['llama']}")
    alive = weakref.ref(magics(shell).registry.get("tiny-llama").model)
    shell.run_line_magic("unload_ext", "llm_magics")
    gc.collect()
    assert alive() is None
    shell.run_line_magic("load_ext", "llm_magics")


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("line", "error", "fragment"),
    [
        ("%llm_load ./no/such/folder", "ModelNotFound", "No such file or folder"),
        ("%llm_load someone/not-cached", "HubUnreachable", "not in the local Hugging Face cache"),
        ("%llm_load --quant 3bit", "InvalidOption", "Unknown --quant '3bit'"),
        ("%llm_load --dtype float8", "InvalidOption", "Unknown --dtype"),
        ("%llm_use nobody", "NotLoaded", "No model named 'nobody'"),
        ("%llm_unload nobody", "NotLoaded", "No model named 'nobody'"),
        ("%llm_load --estimate --tokenizer-only", "InvalidOption", "--estimate"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(shell, tiny_models, line, error, fragment):
    run(shell, f"%llm_load {tiny_models['llama']} --as keep")
    before = (magics(shell).registry.names(), magics(shell).registry.active_name)
    result, captured = run(shell, line)
    assert_one_line_error(result, captured, error, fragment)
    assert (magics(shell).registry.names(), magics(shell).registry.active_name) == before


def test_unknown_flag_is_a_usage_error(shell):
    result, captured = run(shell, "%llm_load --bogus")
    assert not result.success
    assert type(result.error_in_exec).__name__ == "UsageError"
    assert "Traceback" not in captured.stdout + captured.stderr


def test_a_failed_reload_keeps_the_loaded_model(shell, tiny_models, monkeypatch):
    run(shell, f"%llm_load {tiny_models['llama']} --as x")
    kept = magics(shell).registry.get("x").model
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    result, captured = run(shell, f"%llm_load {tiny_models['llama']} --as x --quant 4bit --reload")
    assert_one_line_error(result, captured, "QuantizationUnavailable", "pip install bitsandbytes")
    assert magics(shell).registry.get("x").model is kept


def test_too_big_a_model_is_refused_unless_forced(shell, tmp_path):
    import psutil

    from tests.test_loading import big_config_folder

    folder = big_config_folder(tmp_path, bytes_in_bf16=1.5 * psutil.virtual_memory().available)
    result, captured = run(shell, f"%llm_load {folder} --dtype bfloat16")
    assert_one_line_error(result, captured, "InsufficientMemory", "try --quant")
    assert len(magics(shell).registry) == 0
    _, captured = run(shell, f"%llm_load {folder} --estimate")
    assert "no" in shown_text(captured).split()
    # With --force the estimate is skipped; this folder has no weights, which is said in one line.
    result, captured = run(shell, f"%llm_load {folder} --dtype bfloat16 --force")
    assert_one_line_error(result, captured, "ModelLoadFailed", "Cannot load")
    assert len(magics(shell).registry) == 0


# ------------------------------------------------------------------ the bundled model


@pytest.mark.slow
def test_bundled_default_loads_converts_once_and_answers(shell, isolated_cache):
    import torch

    result, captured = run(shell, "%llm_load")
    assert result.success, result.error_in_exec
    entry = magics(shell).registry.get("smollm2-135m")
    assert entry.describe().has_chat_template and entry.describe().context_length == 8192
    assert list(isolated_cache.glob("SmolLM2-135M-Instruct*/model.safetensors"))
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = entry.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        output = entry.model.generate(**inputs, max_new_tokens=20, do_sample=False)
    reply = entry.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in reply


@pytest.mark.slow
def test_cached_load_in_a_fresh_kernel_does_not_convert_again(shell, isolated_cache):
    run(shell, "%llm_load")  # makes sure the cache exists
    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'llm_magics')\n"
        "ip.run_line_magic('llm_load', '')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Loaded smollm2-135m" in result.stdout
    assert "converting" not in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("options", ["--dtype float32", "--dtype bfloat16", "--quant 8bit", "--quant 4bit"])
def test_estimate_is_within_15_percent_of_the_measured_footprint(shell, options):
    from llm_magics.engines.transformers.memory import estimate_memory
    from llm_magics.engines.transformers.plan import plan_load, plan_mode
    from llm_magics.engines.transformers.source import resolve_source

    source = resolve_source(None)
    quant = options.split()[-1] if "--quant" in options else "none"
    dtype = options.split()[-1] if "--dtype" in options else "auto"
    plan = plan_load(source, quantization=quant, dtype=dtype)
    estimate = estimate_memory(plan)
    run(shell, f"%llm_load {options} --as measured")
    measured = magics(shell).registry.get("measured").describe().footprint_bytes
    predicted = estimate.bytes_for(plan_mode(plan))
    assert abs(predicted - measured) / measured < 0.15, (predicted, measured)


@pytest.mark.slow
def test_estimate_shows_the_table_and_loads_nothing(shell):
    result, captured = run(shell, "%llm_load --estimate")
    assert result.success
    text = shown_text(captured)
    for mode in ("float32", "bfloat16 / float16", "8-bit", "4-bit nf4", "available system RAM", "No weights"):
        assert mode in text
    assert len(magics(shell).registry) == 0


def test_quoted_options_reach_the_loader_without_their_quotes(shell, tiny_models):
    result, captured = run(
        shell, f"""%llm_load {tiny_models["llama"]} --as "mine" --quant "none" --device-map 'cpu'"""
    )
    assert result.success, result.error_in_exec
    assert magics(shell).registry.names() == ["mine"]
    assert magics(shell).registry.get("mine").describe().device == "cpu"


def test_the_same_name_from_another_source_is_not_already_loaded(shell, tiny_models, tmp_path):
    import shutil

    other = tmp_path / "other" / tiny_models["llama"].name
    shutil.copytree(tiny_models["llama"], other)
    assert run(shell, f"%llm_load {tiny_models['llama']}")[0].success
    name = magics(shell).registry.names()[0]
    first = magics(shell).registry.get(name)
    result, captured = run(shell, f"%llm_load {other}")
    assert_one_line_error(result, captured, "InvalidOption", "already loaded from")
    assert "--as NAME" in captured.stdout + captured.stderr
    assert magics(shell).registry.get(name) is first, "nothing changed"
    assert run(shell, f"%llm_load {other} --as second")[0].success
    assert magics(shell).registry.names() == [name, "second"]


def test_a_failed_load_leaves_no_status_line_behind(shell, tmp_path, monkeypatch):
    import llm_magics.display.notice as notice

    monkeypatch.setattr(notice, "is_rich", lambda shell: True)  # a notebook, where it can be replaced
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')
    result, captured = run(shell, f"%llm_load {broken}")
    assert not result.success
    assert "Loading broken" in captured.outputs[0].data["text/plain"], "the status line was shown"
    assert captured.outputs[-1].update and captured.outputs[-1].data == {"text/plain": ""}


def test_unload_names_what_still_holds_the_model(shell, tiny_models):
    run(shell, f"%llm_load {tiny_models['llama']} --as a")
    shell.run_cell("import llm_magics\nllm_magics.get_model('a')", store_history=True)  # Out[n], _n and _
    shell.user_ns["test_model_ref"], _ = llm_magics.get_model("a")
    result, captured = run(shell, "%llm_unload a")
    assert result.success
    text = shown_text(captured)
    assert "still refer to its model" in text  # several holders
    assert "Out[" in text and "test_model_ref" in text
    assert "del test_model_ref" in text and "%reset -f out" in text
    assert magics(shell).registry.names() == []
    shell.run_line_magic("reset", "-f")


def test_unload_frees_once_the_named_holder_is_gone(shell, tiny_models):
    run(shell, f"%llm_load {tiny_models['llama']} --as a")
    shell.user_ns["test_cache"] = {"model": llm_magics.get_model("a")[0]}
    alive = weakref.ref(magics(shell).registry.get("a").model)
    result, captured = run(shell, "%llm_unload a")
    assert "test_cache still refers" in shown_text(captured)
    del shell.user_ns["test_cache"]
    gc.collect()
    assert alive() is None


def test_unloading_several_models_names_them_and_their_footprint(shell, tiny_models):
    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --as one")
    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --as two")
    _, captured = run(shell, "%llm_unload --all")
    assert "Unloaded one, two:" in shown_text(captured) and "(their footprint:" in shown_text(captured)
    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --as three")
    _, captured = run(shell, "%llm_unload three")
    assert "(its footprint:" in shown_text(captured)


# ------------------------------------------------------------------ a hub that does not answer


def _hand_made_hub_cache(cache, hub_id: str, folder) -> None:
    """`folder`'s files as the hub client caches a download of `hub_id` (refs/main → a snapshot)."""
    import shutil

    repo = cache / f"models--{hub_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)


def test_a_cached_hub_model_waits_for_one_reachability_check_when_the_hub_does_not_answer(
    shell, tiny_models, tmp_path, monkeypatch
):
    """A hub that never answers costs each check its whole timeout: one load checks once, then
    loads from the cache (the config, the estimate and the weights used to check one each)."""
    import socket

    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers

    # huggingface_hub 2 asks the hub once per process for its list of agent harnesses (3 s at most,
    # then cached): that is the client's, not a check of ours, so it is made first, offline.
    build_hf_headers()
    # A listener whose one-place backlog is full: every further connection waits for its timeout.
    stalled = socket.socket()
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(0)
    port = stalled.getsockname()[1]
    held = socket.create_connection(("127.0.0.1", port))
    tries = []
    connect = socket.create_connection

    def counted(address, *args, **kwargs):
        if address[1] == port:
            tries.append(address)
        return connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counted)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    _hand_made_hub_cache(tmp_path, "acme/cached-llama", tiny_models["llama"])
    try:
        result, captured = run(shell, "%llm_load acme/cached-llama --dtype float32")
    finally:
        held.close(), stalled.close()
    assert result.success, result.error_in_exec
    assert magics(shell).registry.names() == ["cached-llama"]
    assert len(tries) == 1, tries
