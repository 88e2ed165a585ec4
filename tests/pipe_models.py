"""Tiny random-weight models with task heads (classification, masked LM, NER, NLI) for `%llm_pipe`.

DistilBERT configs with a WordPiece tokenizer trained in memory: built offline in well under a
second, saved as ordinary model folders that `transformers.pipeline(task, model=folder)` reads.
"""

from __future__ import annotations

from pathlib import Path

_CORPUS = [
    "I love learning about LLMs!",
    "Paris is the capital of France.",
    "Ada Lovelace worked in London with Charles Babbage.",
    "This movie was terrible, the plot made no sense.",
    "The weather is nice today and the match ended in a draw.",
] * 20

#: The heads, each with its labels (None: the head has no labels).
HEADS = {
    "sentiment": ("AutoModelForSequenceClassification", ["NEGATIVE", "POSITIVE"]),
    "nli": ("AutoModelForSequenceClassification", ["contradiction", "neutral", "entailment"]),
    "mlm": ("AutoModelForMaskedLM", None),
    "ner": ("AutoModelForTokenClassification", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
}


def wordpiece_tokenizer():
    """A BERT-style WordPiece tokenizer (lower-cased, [CLS]/[SEP]/[MASK]) trained on a tiny corpus."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    core.train_from_iterator(_CORPUS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials))
    cls, sep = core.token_to_id("[CLS]"), core.token_to_id("[SEP]")
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def save_task_model(folder: Path, head: str, tokenizer, *, seed: int = 0) -> Path:
    import torch
    import transformers
    from transformers import AutoConfig

    auto_class, labels = HEADS[head]
    extra = {}
    if labels:
        extra = dict(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    config = AutoConfig.for_model(
        "distilbert",
        vocab_size=len(tokenizer),
        dim=32,
        hidden_dim=64,
        n_layers=1,
        n_heads=2,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, auto_class).from_config(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
