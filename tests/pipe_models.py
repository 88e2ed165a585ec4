"""Tiny random-weight models with task heads (classification, masked LM, NER, NLI, extractive
question answering, seq2seq) for `%llm_pipe`.

DistilBERT configs (and a T5 one for seq2seq) with a WordPiece tokenizer trained in memory: built
offline in well under a second, saved as ordinary model folders that `transformers.pipeline(task,
model=folder)` reads.
"""

from __future__ import annotations

import copy
from pathlib import Path

CORPUS = [
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
    "qa": ("AutoModelForQuestionAnswering", None),
    "seq2seq": ("AutoModelForSeq2SeqLM", None),
}

#: What a T5 checkpoint carries for the removed summarization and translation pipelines.
T5_TASK_PARAMS = {
    "summarization": {
        "prefix": "summarize: ",
        "num_beams": 2,
        "min_length": 3,
        "max_length": 24,
        "no_repeat_ngram_size": 3,
        "early_stopping": True,
    },
    "translation_en_to_fr": {"prefix": "translate English to French: ", "num_beams": 2, "max_length": 24},
    "translation_en_to_de": {"prefix": "translate English to German: ", "num_beams": 2, "max_length": 24},
}


def wordpiece_tokenizer(mask_token: str = "[MASK]"):
    """A BERT-style WordPiece tokenizer (lower-cased, [CLS]/[SEP]/[MASK]) trained on a tiny corpus.

    `mask_token="<mask>"` gives it RoBERTa's mask, for text written for `distilroberta-base`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", mask_token]
    core.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials))
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
        mask_token=mask_token,
    )


def save_task_model(folder: Path, head: str, tokenizer, *, seed: int = 0) -> Path:
    import torch
    import transformers
    from transformers import AutoConfig

    auto_class, labels = HEADS[head]
    extra = {}
    if labels:
        extra = dict(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    if head == "seq2seq":
        config = AutoConfig.for_model(
            "t5",
            vocab_size=len(tokenizer),
            d_model=32,
            d_ff=64,
            d_kv=16,
            num_layers=1,
            num_heads=2,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.sep_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
            task_specific_params=T5_TASK_PARAMS,
        )
    else:
        config = AutoConfig.for_model(
            "distilbert",
            vocab_size=len(tokenizer),
            dim=32,
            hidden_dim=64,
            n_layers=1,
            n_heads=2,
            max_position_embeddings=512,
            pad_token_id=tokenizer.pad_token_id,
            **extra,
        )
    torch.manual_seed(seed)
    model = getattr(transformers, auto_class).from_config(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    if head == "qa":
        # DistilBERT takes no token_type_ids; its tokenizer says so (the pipeline feeds only these).
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.model_input_names = ["input_ids", "attention_mask"]
        tokenizer.init_kwargs["model_input_names"] = tokenizer.model_input_names
    tokenizer.save_pretrained(folder)
    return folder
