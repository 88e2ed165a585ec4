"""The example notebooks with a hub: every cell runs, the `raises-exception` ones included.

Offline, their hub cells fail in one line (tests/test_examples.py, tests/test_pipe_notebook.py).
Here the loopback hub of tests/hub_server.py serves tiny random-weight models under the ids those
cells name (`--model gpt2`, or the default model `pipeline(task)` picks, at its pinned revision),
one of them sharded, and the notebooks run in a real kernel whose `HF_ENDPOINT` is that hub, as
Run All runs them for a student with a network. Any other host is behind a proxy that refuses.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import nbformat
import pytest

from tests import factories, notebooks
from tests.hub_server import HubState, LoopbackHub
from tests.pipe_models import save_task_model, wordpiece_tokenizer

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = ("pipelines", "open_llms_lesson")
# The causal LM stands in for GPT-2, sharded: several safetensors files and their index.
SHARD_SIZE = "200KB"
CODE = "# The same in plain transformers:"  # how a --code cell's code opens
FLAGS = ("--code", "--lines")  # the options of the cells that take no value
SCORE = r"[█▌░ ]*\s+(?:0\.\d+|1\.0+|\d+\.\d+%)"  # a score's bar and number, or a percentage

#: The head of tests/pipe_models.py that stands in for a task's model (None: a tiny GPT-2).
STAND_INS = {
    "text-classification": "sentiment",
    "zero-shot-classification": "nli",
    "fill-mask": "mlm",
    "token-classification": "ner",
    "question-answering": "qa",
    "translation": "seq2seq",
    "text-generation": None,
}


class HubCell(NamedTuple):
    """What a tagged `%llm_pipe` cell asks the hub for."""

    task: str  # canonical, as the result's footer names it: text-classification, translation_en_to_fr
    hub_id: str
    revision: str | None  # the default's pinned revision; None for --model
    words: list[str]  # the cell's first line, split as the magic splits it


def hub_cell(cell: nbformat.NotebookNode) -> HubCell:
    """From transformers itself, not the package: the default `pipeline(task)` picks (a package
    that picked another would ask the hub for a repository it does not serve)."""
    from transformers.pipelines import TASK_ALIASES, check_task

    words = shlex.split(cell.source.splitlines()[0])
    assert words[0].lstrip("%") == "llm_pipe", cell.source
    task = TASK_ALIASES.get(words[1], words[1])
    if "--model" in words:
        return HubCell(task, words[words.index("--model") + 1], None, words)
    hub_id, revision = check_task(task)[1]["default"]["model"]
    return HubCell(task, hub_id, revision, words)


def tagged(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebooks.code_cells(nb) if notebooks.is_tagged(cell)]


def committed(name: str) -> nbformat.NotebookNode:
    return nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackHub]:
    """The loopback hub, serving a tiny stand-in under each id the notebooks' hub cells name."""
    root = tmp_path_factory.mktemp("hub_models")
    state = HubState()
    for cell in (hub_cell(cell) for name in NOTEBOOKS for cell in tagged(committed(name))):
        if cell.hub_id in state.repos:
            continue
        folder = root / cell.hub_id.replace("/", "--")
        head = STAND_INS[cell.task.split("_")[0]]
        if head is None:
            factories.save_tiny_model(
                folder, "gpt2", factories.byte_bpe_tokenizer(), max_shard_size=SHARD_SIZE
            )
        else:
            # RoBERTa's mask is <mask>, as the notebook's fill-mask text writes it.
            mask = "<mask>" if "roberta" in cell.hub_id else "[MASK]"
            save_task_model(folder, head, wordpiece_tokenizer(mask))
        state.repos[cell.hub_id] = folder
        if cell.revision:
            state.revisions.add(cell.revision)
    with LoopbackHub(state) as server:
        yield server


@pytest.fixture(scope="module")
def refusing_proxy() -> Iterator[str]:
    """A proxy address that refuses every connection: a request that bypasses HF_ENDPOINT fails."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # bound and never listening: connecting is refused
        yield f"http://127.0.0.1:{bound.getsockname()[1]}"


class Run(NamedTuple):
    nb: nbformat.NotebookNode
    fetched: list[tuple[str, str]]  # (hub id, file) the hub sent during the run
    asked: set[str]  # the hub ids the run asked for


@pytest.fixture(scope="module", params=NOTEBOOKS)
def run(request, hub: LoopbackHub, refusing_proxy: str, tmp_path_factory) -> Run:
    """The notebook run against the loopback hub, with a Hugging Face cache of its own."""
    home = tmp_path_factory.mktemp(f"hf_home_{request.param}")
    fetched, asked = len(hub.state.fetched), len(hub.state.asked)
    nb = notebooks.execute_against_hub(
        EXAMPLES / f"{request.param}.ipynb", hub.endpoint, home, proxy=refusing_proxy
    )
    nbformat.validate(nb)
    return Run(nb, hub.state.fetched[fetched:], set(hub.state.asked[asked:]))


def test_every_cell_runs_the_hub_cells_included(run: Run) -> None:
    notebooks.assert_every_cell_ran(run.nb)


def test_each_hub_cell_shows_its_result_from_the_model_it_names(run: Run, hub: LoopbackHub) -> None:
    for cell in tagged(run.nb):
        wanted = hub_cell(cell)
        shown = [o.data["text/plain"] for o in cell.outputs if o.output_type == "display_data"]
        code = [text for text in shown if text.startswith(CODE)]
        assert len(code) == ("--code" in wanted.words), shown
        if code:
            assert_code_names_the_model(code[0], wanted)
        (result,) = (text for text in shown if not text.startswith(CODE))
        # The result's footer names the task and the model downloaded for it.
        footer = f"\n[{wanted.task} · {wanted.hub_id.split('/')[-1]}]"
        assert result.endswith(footer), result
        assert_result(result.removesuffix(footer), wanted, cell, hub.state.repos[wanted.hub_id])


def assert_code_names_the_model(shown: str, wanted: HubCell) -> None:
    assert f"model_id = '{wanted.hub_id}'" in shown and f"pipeline(\n    '{wanted.words[1]}'," in shown
    assert (f"revision='{wanted.revision}'" in shown) == (wanted.revision is not None), shown


def _labels(folder: Path) -> set[str]:
    return set(json.loads((folder / "config.json").read_text())["id2label"].values())


def inputs_of(cell: nbformat.NotebookNode, words: list[str]) -> list[str]:
    """The cell's inputs: the line's words after the task and its options, or the cell's body."""
    if words[0] == "%%llm_pipe":
        return cell.source.splitlines()[1:]
    at = 2
    while words[at].startswith("--"):
        at += 1 if words[at] in FLAGS else 2
    return [" ".join(words[at:])]


def assert_result(result: str, wanted: HubCell, cell: nbformat.NotebookNode, folder: Path) -> None:
    """What the task shows, as a student reads it: the cell's inputs, each with its result, in the
    served model's own labels."""
    inputs = inputs_of(cell, wanted.words)
    assert inputs and all(inputs), cell.source
    if wanted.task == "text-classification":
        (text,) = inputs
        labels = "|".join(map(re.escape, _labels(folder)))
        assert re.match(rf"{re.escape(text)}\n  (?:{labels}) +{SCORE}$", result, re.M), result
    elif wanted.task == "zero-shot-classification":
        # One block per input line, each with every label the cell gave, scored.
        labels = wanted.words[wanted.words.index("--labels") + 1].split(", ")
        blocks = result.split("\n\n")
        assert [block.splitlines()[0] for block in blocks] == inputs, result
        for block in blocks:
            assert sorted(re.findall(rf"^  (\S+) +{SCORE}$", block, re.M)) == sorted(labels), block
    elif wanted.task == "fill-mask":
        (text,) = inputs
        assert result.startswith(f"{text}\n") and re.findall(rf"^  \S+ +{SCORE}$", result, re.M), result
    elif wanted.task == "token-classification":
        kinds = {label.split("-")[-1] for label in _labels(folder) if label != "O"}
        found = re.findall(r"^  (\S+): .+ \((0\.\d+)\)$", result, re.M)
        assert found and {kind for kind, _ in found} <= kinds, result
    elif wanted.task == "text-generation":
        (prompt,) = inputs
        continued = result.splitlines()[0]
        assert continued.startswith(prompt) and len(continued) > len(prompt), result
    elif wanted.task.startswith("translation"):
        (text,) = inputs
        assert re.match(rf"{re.escape(text)}\n→ \S", result), result
    elif wanted.task == "question-answering":
        # An extractive model's answer is a span of the context, with its score.
        (question,) = inputs
        context = wanted.words[wanted.words.index("--context") + 1]
        assert result.startswith(f"Q: {question}\n"), result
        answer = re.search(r"^A: (.+) \((0\.\d+)\)$", result, re.M)
        assert answer and answer.group(1) in context, result
    else:
        raise AssertionError(f"no check for {wanted.task}")


def test_the_hub_served_each_model_the_notebook_names(run: Run, hub: LoopbackHub) -> None:
    wanted = {hub_cell(cell).hub_id for cell in tagged(run.nb)}
    # The models the run asked for are those its cells name, and each came down. Whatever else it
    # asked (bitsandbytes, on a CPU with AVX512-BF16, looks for an optional kernel on the hub) the
    # hub refused, and no cell needed it: every cell ran.
    assert run.asked & set(hub.state.repos) == wanted and {repo for repo, _ in run.fetched} == wanted
    for hub_id in wanted:
        folder = hub.state.repos[hub_id]
        weights = {p.name for p in folder.glob("model*.safetensors*")}  # the index json included
        came = {file for repo, file in run.fetched if repo == hub_id}
        assert {"config.json", "tokenizer.json"} | weights <= came, (hub_id, came)


def test_a_served_model_is_sharded(hub: LoopbackHub) -> None:
    shards = {folder: list(folder.glob("model-*.safetensors")) for folder in hub.state.repos.values()}
    assert any(
        len(found) > 1 and (folder / "model.safetensors.index.json").is_file()
        for folder, found in shards.items()
    )
