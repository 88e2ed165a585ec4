"""`--code`: the plain, runnable transformers code that does what a magic did.

Each function returns Python source built from what the magic actually used: the load plan (the
compute dtype chosen for this machine, the `BitsAndBytesConfig`, the device map), the messages the
chat template saw, the sampling options, the pipeline's task and arguments. The model is named by
the hub id or path it was loaded from (a bundled GGUF by its file, with `gguf_file=`), so the code
runs in a fresh Python as it is. Nothing here imports torch or transformers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .conversation import Message
from .engines.pipeline import removed_tasks
from .engines.pipeline.names import PipeTask, TaskName
from .engines.transformers.generation import generate_kwargs
from .engines.transformers.quantization import COMPUTE_DTYPE_KEY, bitsandbytes_settings
from .engines.transformers.source import SourceKind
from .prompts import PLAIN_STOP, render_plain
from .values import GenerationOptions


def _kwargs(pairs: Sequence[tuple[str, str]], indent: str = "") -> str:
    """`name=value` arguments (values already code; no name: positional), on one line when short,
    else one per line."""
    items = [f"{name}={value}" if name else value for name, value in pairs]
    inline = ", ".join(items)
    if len(inline) + len(indent) <= 70 and "\n" not in inline:
        return inline
    return "\n" + "".join(f"{indent}    {item},\n" for item in items) + indent


def _generate_pairs(options: GenerationOptions) -> list[tuple[str, str]]:
    return [(name, repr(value)) for name, value in generate_kwargs(options).items()]


def _quantization(plan: Any) -> str | None:
    """The `BitsAndBytesConfig(...)` expression the load builds (`bitsandbytes_settings`), or None."""
    settings = bitsandbytes_settings(plan) if plan is not None else None
    if settings is None:
        return None
    if len(settings) == 1:
        return "BitsAndBytesConfig({}={!r})".format(*next(iter(settings.items())))
    lines = ["BitsAndBytesConfig("]
    for key, value in settings.items():
        if key == COMPUTE_DTYPE_KEY:
            lines.append(f"    {key}=torch.{value},  # {plan.dtype_reason}")
        else:
            # Double quotes, as the rest of the printed code (and black) writes strings.
            lines.append(f"    {key}={json.dumps(value) if isinstance(value, str) else repr(value)},")
    return "\n".join([*lines, ")"])


def _location(plan: Any, fallback: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Lines naming the model (`model_id = ...`) and the from_pretrained arguments that go with them."""
    source = getattr(plan, "source", None)
    if source is None:
        return [f"model_id = {fallback!r}"], []
    pairs: list[tuple[str, str]] = []
    if source.kind is SourceKind.GGUF:
        lines = [
            f"model_id = {str(source.path.parent)!r}",
            f"gguf_file = {source.path.name!r}  # read and dequantized by transformers (takes a while)",
        ]
        pairs.append(("gguf_file", "gguf_file"))
        if source.bundled:
            lines.insert(
                0, "# The bundled SmolLM2-135M-Instruct; from the hub: HuggingFaceTB/SmolLM2-135M-Instruct"
            )
    elif source.kind is SourceKind.FOLDER:
        lines = [f"model_id = {str(source.path)!r}"]
    else:
        lines = [f"model_id = {source.hub_id!r}"]
        if plan.revision:
            pairs.append(("revision", repr(plan.revision)))
    if plan.trust_remote_code:
        pairs.append(("trust_remote_code", "True"))
    return lines, pairs


def load_code(plan: Any, *, fallback: str = "MODEL", auto_class: str = "AutoModelForCausalLM") -> str:
    """`%llm_load`: the tokenizer and the model, as `engines.transformers.loading.load_model` built them."""
    location, access = _location(plan, fallback)
    quantization = _quantization(plan)
    tokenizer_only = bool(getattr(plan, "tokenizer_only", False))
    names = ["AutoTokenizer"] if tokenizer_only else [auto_class, "AutoTokenizer"]
    if quantization:
        names.append("BitsAndBytesConfig")
    lines = [] if tokenizer_only else ["import torch"]
    lines += [f"from transformers import {', '.join(names)}", "", *location]
    lines.append(f"tokenizer = AutoTokenizer.from_pretrained({_kwargs([('', 'model_id'), *access])})")
    if tokenizer_only:
        return "\n".join(lines)
    if quantization:
        lines.append(f"quantization_config = {quantization}")
    pairs = [("", "model_id"), *access]
    if plan is not None:
        pairs.append(("dtype", f"torch.{plan.dtype}"))
        if plan.device_map:
            pairs.append(("device_map", repr(plan.device_map)))
    if quantization:
        pairs.append(("quantization_config", "quantization_config"))
    lines.append(f"model = {auto_class}.from_pretrained({_kwargs(pairs)})")
    return "\n".join(lines)


def _messages(messages: Sequence[Message]) -> str:
    rows = "".join(f"    {{'role': {m['role']!r}, 'content': {m['content']!r}}},\n" for m in messages)
    return f"messages = [\n{rows}]"


def chat_code(
    plan: Any,
    messages: Sequence[Message],
    options: GenerationOptions,
    *,
    plain_template: bool = False,
    fallback: str = "MODEL",
) -> str:
    """`%%llm_chat`: the conversation through the chat template, streamed with `TextStreamer`."""
    lines = [load_code(plan, fallback=fallback), "from transformers import TextStreamer", ""]
    lines.append(_messages(messages))
    if plain_template:
        lines += [
            "# No chat template: a plain 'User: … Assistant:' transcript, stopped at the next 'User:'.",
            f"prompt = {render_plain(messages)!r}",
            "inputs = tokenizer(prompt, return_tensors='pt').to(model.device)",
        ]
        extra = [("stop_strings", repr([PLAIN_STOP])), ("tokenizer", "tokenizer")]
    else:
        lines += [
            "inputs = tokenizer.apply_chat_template(",
            "    messages, add_generation_prompt=True, return_dict=True, return_tensors='pt'",
            ").to(model.device)",
        ]
        extra = []
    lines += _generate_lines(options, extra, "reply")
    return "\n".join(lines)


def alternatives_code(options: GenerationOptions, show: int) -> str:
    """`--alternatives`, after `chat_code`'s lines: each token's probability and its runners-up,
    computed as the magic does, from `generate`'s raw logits (softmax of logits / temperature)."""
    temperature = options.temperature or 1.0
    pairs = [
        ("", "**inputs"),
        *_generate_pairs(options),
        ("output_logits", "True"),
        ("return_dict_in_generate", "True"),
    ]
    lines = ["", "# --alternatives: the same generation, keeping generate's raw logits"]
    if options.seed is not None:
        lines.append(f"torch.manual_seed({options.seed})")
    lines += [
        f"scored = model.generate({_kwargs(pairs)})",
        "new_ids = scored.sequences[0, inputs['input_ids'].shape[1]:]",
        f"probs = torch.softmax(torch.cat(scored.logits).float() / {temperature!r}, dim=-1)",
        "chosen = probs[torch.arange(len(new_ids)), new_ids]  # each token's probability",
        f"top = torch.topk(probs, {show + 1}, dim=-1)",
        "for token_id, p, ids, ps in zip(new_ids.tolist(), chosen.tolist(), top.indices.tolist(), top.values.tolist()):",
        f"    runners = [(tokenizer.decode([i]), round(q, 4)) for i, q in zip(ids, ps) if i != token_id][:{show}]",
        "    print(repr(tokenizer.decode([token_id])), round(p, 4), runners)",
    ]
    return "\n".join(lines)


def complete_code(plan: Any, prompt: str, options: GenerationOptions, *, fallback: str = "MODEL") -> str:
    """`%%llm_complete`: raw continuation, no chat template."""
    lines = [load_code(plan, fallback=fallback), "from transformers import TextStreamer", ""]
    lines += [f"prompt = {prompt!r}", "inputs = tokenizer(prompt, return_tensors='pt').to(model.device)"]
    lines += _generate_lines(options, [], "continuation")
    return "\n".join(lines)


def _generate_lines(options: GenerationOptions, extra: list[tuple[str, str]], result: str) -> list[str]:
    lines = ["streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)"]
    if options.seed is not None:
        lines.append(f"torch.manual_seed({options.seed})")
    pairs = [("", "**inputs"), ("streamer", "streamer"), *_generate_pairs(options), *extra]
    lines.append(f"output = model.generate({_kwargs(pairs)})")
    lines.append(
        f"{result} = tokenizer.decode(output[0, inputs['input_ids'].shape[1]:], skip_special_tokens=True)"
    )
    return lines


def tokens_code(plan: Any, text: str, *, fallback: str = "MODEL") -> str:
    """`%tokens TEXT`: text to ids, the pieces the ids stand for, and back to text."""
    location, access = _location(plan, fallback)
    lines = ["from transformers import AutoTokenizer", "", *location]
    lines.append(f"tokenizer = AutoTokenizer.from_pretrained({_kwargs([('', 'model_id'), *access])})")
    lines += [
        f"text = {text!r}",
        "ids = tokenizer(text)['input_ids']            # what the model receives",
        "print(ids)",
        "print(tokenizer.convert_ids_to_tokens(ids))  # the vocabulary piece behind each id",
        "print(tokenizer.decode(ids))                 # and back to text",
    ]
    return "\n".join(lines)


_PIPE_VARIABLES = {
    TaskName.TEXT_CLASSIFICATION: "classifier",
    TaskName.ZERO_SHOT_CLASSIFICATION: "classifier",
    TaskName.TEXT_GENERATION: "generator",
    TaskName.FILL_MASK: "unmasker",
    TaskName.TOKEN_CLASSIFICATION: "ner",
    TaskName.QUESTION_ANSWERING: "qa",
    TaskName.SUMMARIZATION: "summarizer",
    TaskName.TRANSLATION: "translator",
}


def pipeline_code(
    task: PipeTask,
    written: str,
    plan: Any,
    inputs: str | Sequence[str],
    options: dict[str, Any],
    *,
    default: tuple[str, str | None] | None = None,
    over_loaded_model: bool = False,
    fallback: str = "MODEL",
) -> str:
    """`%llm_pipe`: `pipeline(task, model=...)` and the call with the options used.

    `written` is the task as the cell spelled it (`ner`, `sentiment-analysis`), which the code keeps;
    `default` is the task's default (id, revision) when no --model was given; `over_loaded_model`
    when the pipeline wraps a model already loaded (a chat model, a GGUF): then the code loads it as
    `%llm_load --code` shows, and hands the objects to `pipeline`.
    """
    variable = _PIPE_VARIABLES[task.name]
    source = getattr(plan, "source", None)
    lines: list[str] = []
    if over_loaded_model or (source is not None and source.kind is SourceKind.GGUF):
        lines += [load_code(plan, fallback=fallback), "from transformers import pipeline", ""]
        lines.append(f"{variable} = pipeline({written!r}, model=model, tokenizer=tokenizer)")
    else:
        quantization = _quantization(plan)
        names = ["pipeline"] + (["BitsAndBytesConfig"] if quantization else [])
        lines += ["import torch", f"from transformers import {', '.join(names)}", ""]
        location, access = _location(plan, fallback)
        if default is not None:
            lines.append(f"# pipeline({written!r}) with no model picks this same default")
        lines += location
        pairs = [("", repr(written)), ("model", "model_id"), *access]
        if plan is not None:
            pairs.append(("dtype", f"torch.{plan.dtype}"))
            if plan.device_map:
                pairs.append(("device_map", repr(plan.device_map)))
        if quantization:
            lines.append(f"quantization_config = {quantization}")
            pairs.append(("model_kwargs", '{"quantization_config": quantization_config}'))
        lines.append(f"{variable} = pipeline({_kwargs(pairs)})")
    call = [("", repr(inputs if isinstance(inputs, str) else list(inputs)))]
    seed = options.get("seed")
    if seed is not None:
        lines.append(f"torch.manual_seed({seed})")
    call += [(name, repr(value)) for name, value in options.items() if name != "seed"]
    lines.append(f"result = {variable}({_kwargs(call)})")
    lines.append("print(result)")
    return "\n".join(lines)


def removed_task_code(
    task: PipeTask,
    runner: Any,
    plan: Any,
    config: Any,
    inputs: str | Sequence[str],
    options: dict[str, Any],
    *,
    fallback: str = "MODEL",
) -> str:
    """`%llm_pipe` for a task transformers 5 removed: what `removed_tasks` runs, written out (there
    is no `pipeline(...)` line to show any more)."""
    base, languages = task.name, task.languages
    options = dict(options)
    options.pop("src_lang", None), options.pop("tgt_lang", None)
    seed = options.pop("seed", None)
    context = options.pop("context", None)
    auto_class = {
        removed_tasks.Runner.SEQ2SEQ: "AutoModelForSeq2SeqLM",
        removed_tasks.Runner.EXTRACTIVE: "AutoModelForQuestionAnswering",
        removed_tasks.Runner.CHAT: "AutoModelForCausalLM",
    }[runner]
    lines = [
        load_code(plan, fallback=fallback, auto_class=auto_class),
        "",
        f"# transformers 5 removed pipeline({base.value!r}); this is what it did, written out.",
    ]
    if seed is not None:
        lines.append(f"torch.manual_seed({seed})")
    many = not isinstance(inputs, str)
    texts: list[str] = [inputs] if isinstance(inputs, str) else list(inputs)
    if runner is removed_tasks.Runner.EXTRACTIVE:
        lines += _extractive_lines(texts, context or "", options.get("top_k", 1))
        lines.append("result = [answer(q) for q in questions]" if many else "result = answer(questions[0])")
    elif runner is removed_tasks.Runner.SEQ2SEQ:
        lines += _seq2seq_lines(config, base, languages, options, texts)
    else:
        lines += _chat_task_lines(base, languages, context, options, texts, many)
    lines.append("print(result)")
    return "\n".join(lines)


def _seq2seq_lines(
    config: Any, base: TaskName, languages: Any, options: dict[str, Any], texts: list[str]
) -> list[str]:
    """A removed summarization or translation task: the model's prefix, then `generate` per text."""
    prefix, kwargs = removed_tasks.seq2seq_generation(config, base, languages, options)
    key = removed_tasks.REMOVED_TASKS[base].output_key
    pairs = [("", "**inputs"), *[(name, repr(value)) for name, value in kwargs.items()]]
    return [
        f"prefix = {prefix!r}  # the model's own, from config.task_specific_params"
        if prefix
        else "prefix = ''",
        f"texts = {texts!r}",
        "result = []",
        "for text in texts:",
        "    inputs = tokenizer(prefix + text, return_tensors='pt', truncation=True).to(model.device)",
        f"    output = model.generate({_kwargs(pairs, '    ')})",
        "    produced = tokenizer.decode(output[0], skip_special_tokens=True, clean_up_tokenization_spaces=True)",
        f"    result.append({{{key!r}: produced}})",
    ]


def _chat_task_lines(
    base: TaskName, languages: Any, context: str | None, options: dict[str, Any], texts: list[str], many: bool
) -> list[str]:
    """A removed task run by a chat model: its prompt per text, the reply read back as the task's output."""
    prompts = [
        removed_tasks.chat_prompt(base, text, languages=languages, context=context)[0]["content"]
        for text in texts
    ]
    pairs = [("", "**inputs"), *[(name, repr(value)) for name, value in options.items()]]
    lines = [
        f"prompts = {prompts!r}",
        "result = []",
        "for prompt in prompts:",
        "    messages = [{'role': 'user', 'content': prompt}]",
        "    inputs = tokenizer.apply_chat_template(",
        "        messages, add_generation_prompt=True, return_dict=True, return_tensors='pt'",
        "    ).to(model.device)",
        f"    output = model.generate({_kwargs(pairs, '    ')})",
        "    produced = tokenizer.decode(output[0, inputs['input_ids'].shape[1]:], skip_special_tokens=True).strip()",
    ]
    if base is not TaskName.QUESTION_ANSWERING:
        key = removed_tasks.REMOVED_TASKS[base].output_key
        return [*lines, f"    result.append({{{key!r}: produced}})"]
    lines += [
        f"    context = {context!r}",
        f"    for label in {removed_tasks.ANSWER_LABELS!r}:  # small models echo the prompt's format",
        "        if produced.lower().startswith(label):",
        "            produced = produced[len(label):].strip()",
        "    at = context.lower().find(produced.lower()) if produced else -1  # where to highlight it",
        "    found = at >= 0",
        "    result.append({'score': None, 'start': at if found else None,",
        "                   'end': at + len(produced) if found else None, 'answer': produced})",
    ]
    return lines if many else [*lines, "result = result[0]"]


def _extractive_lines(questions: Sequence[str], context: str, top_k: int) -> list[str]:
    """QuestionAnsweringPipeline's span search (as in transformers 5.0), for fast tokenizers."""
    return f"""questions = {list(questions)!r}
context = {context!r}
top_k = {top_k!r}


def answer(question):
    # Question and context as one input, in windows of 384 tokens overlapping by 128.
    encoded = tokenizer(question, context, truncation='only_second', max_length=min(tokenizer.model_max_length, 384),
                        stride=128, return_overflowing_tokens=True, return_offsets_mapping=True)
    answers = []
    for window in range(len(encoded['input_ids'])):
        inputs = {{name: torch.tensor([encoded[name][window]]) for name in tokenizer.model_input_names if name in encoded}}
        with torch.inference_mode():
            output = model(**inputs)
        # The answer starts and ends in the context (sequence 1); [CLS] stays in the softmax ("no answer").
        in_context = torch.tensor([sequence == 1 for sequence in encoded.sequence_ids(window)])
        in_softmax = in_context | (inputs['input_ids'][0] == tokenizer.cls_token_id)
        start = output.start_logits[0].double().masked_fill(~in_softmax, -10000.0).softmax(-1)
        end = output.end_logits[0].double().masked_fill(~in_softmax, -10000.0).softmax(-1)
        start[0] = end[0] = 0.0
        # Each span of at most 15 tokens, scored start x end; the best 2 * top_k + 10 (widened to
        # words, several spans can become one answer).
        scores = torch.outer(start, end).triu().tril(14).flatten()
        for index in scores.topk(min(top_k * 2 + 10, scores.numel())).indices.tolist():
            first, last = divmod(index, len(end))
            if not (in_context[first] and in_context[last]):
                continue
            # Widened to whole words, as characters of the context.
            tokens = encoded[window]
            begin = tokens.word_to_chars(tokens.token_to_word(first), sequence_index=1)[0]
            stop = tokens.word_to_chars(tokens.token_to_word(last), sequence_index=1)[1]
            text = context[begin:stop]
            same = [a for a in answers if a['answer'].lower() == text.lower()]
            if same:  # the same answer in two windows: their scores add up
                same[0]['score'] += float(scores[index])
            else:
                answers.append({{'score': float(scores[index]), 'start': begin, 'end': stop, 'answer': text}})
    answers = sorted(answers, key=lambda a: a['score'], reverse=True)[:top_k]
    return answers[0] if len(answers) == 1 else answers

""".splitlines()


__all__ = ["chat_code", "complete_code", "load_code", "pipeline_code", "removed_task_code", "tokens_code"]


# --------------------------------------------------------------------------- a model on a server


def _client_lines(api: str, key_variable: str | None) -> list[str]:
    """The `openai` client for the server at `api`; the key is read from its variable, never written."""
    key = f"os.environ[{key_variable!r}]" if key_variable else repr("EMPTY")
    lines = ["import os", ""] if key_variable else []
    return [*lines, "from openai import OpenAI", "", f"client = OpenAI(base_url={api!r}, api_key={key})"]


def remote_load_code(api: str, model: str, key_variable: str | None) -> str:
    """`%llm_load --endpoint`: nothing is loaded here; the client, and the check of what is served."""
    return "\n".join(
        [
            *_client_lines(api, key_variable),
            "served = [m.id for m in client.models.list()]",
            f"assert {model!r} in served, served",
        ]
    )


def remote_generate_code(
    api: str,
    model: str,
    key_variable: str | None,
    options: GenerationOptions,
    *,
    messages: Sequence[Message] | None = None,
    prompt: str | None = None,
) -> str:
    """`%%llm_chat` (`messages`) or `%%llm_complete` (`prompt`) on a server: the streamed `openai`
    call with OpenAI's own sampling fields (the server applies its chat template)."""
    pairs = [
        ("model", repr(model)),
        ("messages" if messages is not None else "prompt", "messages" if messages is not None else "prompt"),
        ("max_tokens", repr(options.max_new_tokens)),
        ("temperature", repr(options.temperature)),
        ("top_p", repr(1.0 if options.greedy else options.top_p)),
    ]
    if options.seed is not None:
        pairs.append(("seed", repr(options.seed)))
    pairs.append(("stream", "True"))
    lines = [*_client_lines(api, key_variable), ""]
    if messages is not None:
        lines += [_messages(messages), f"stream = client.chat.completions.create({_kwargs(pairs)})"]
        piece = "chunk.choices[0].delta.content"
    else:
        lines += [f"prompt = {prompt!r}", f"stream = client.completions.create({_kwargs(pairs)})"]
        piece = "chunk.choices[0].text"
    lines += [
        "for chunk in stream:",
        "    if chunk.choices:",
        f"        print({piece} or '', end='', flush=True)",
    ]
    return "\n".join(lines)
