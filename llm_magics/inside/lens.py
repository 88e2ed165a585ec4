"""The logit lens (`%llm_next --lens`): what each layer would predict as the next token, reading its
hidden state through the model's final norm and output head.

`output_hidden_states=True` gives the embeddings and each block's output: `layers + 1` states. In
transformers 5 the last one is overwritten with the output of the final norm (`capture_outputs`'s
`tie_last_hidden_states`), so only the earlier ones go through the norm here, and the last row is
the model's own logits: it equals `%llm_next`'s distribution by construction. torch is imported
inside the functions only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import NotSupported
from .common import device_of, held_model, labels, prompt

#: Where models keep their final norm, on the base model (Llama's `norm`, GPT-2's `ln_f`, Phi's
#: `final_layernorm`, the others' `norm_f`/`final_norm`).
NORM_NAMES = ("norm", "final_layernorm", "ln_f", "norm_f", "final_norm")


@dataclass(frozen=True)
class LensToken:
    id: int
    label: str
    probability: float


@dataclass(frozen=True)
class Lens:
    """Per layer (0: the embeddings; i: after block i; the last: the model's output) the `show`
    likeliest next tokens, and `answer`, the model's own top token, with its probability at each
    layer. `settles` is the first layer from which `answer` is the top token to the end.
    `probabilities` is the whole [layers + 1, vocabulary] array (float32)."""

    name: str
    text: str
    prompt_tokens: int
    rows: tuple[tuple[LensToken, ...], ...]
    answer: LensToken
    answer_probabilities: tuple[float, ...]
    settles: int
    probabilities: np.ndarray


def final_norm(model: Any) -> Any:
    """The model's final norm module (on its base model), or `NotSupported` in one line."""
    base = getattr(model, "base_model", model)
    for name in NORM_NAMES:
        module = getattr(base, name, None)
        if callable(module):
            return module
    raise NotSupported(
        f"--lens needs the final norm of {type(model).__name__}, and it has none of "
        f"{', '.join(NORM_NAMES)} on its base model."
    )


def lens_probabilities(model: Any, ids: tuple[int, ...]) -> np.ndarray:
    """[layers + 1, vocabulary] float32 probabilities of the token after `ids`, layer by layer."""
    import torch

    norm, head = final_norm(model), model.get_output_embeddings()
    if head is None:
        raise NotSupported(f"--lens needs an output head, and {type(model).__name__} has none.")
    inputs = torch.tensor([list(ids)], device=device_of(model))
    with torch.inference_mode():
        output = model(input_ids=inputs, output_hidden_states=True)
        states = output.hidden_states
        logits = [head(norm(state[:, -1:]))[0, -1] for state in states[:-1]]
        logits.append(output.logits[0, -1])
        probabilities = torch.softmax(torch.stack(logits).float(), dim=-1)
    return probabilities.cpu().numpy()


def settling_layer(top_ids: np.ndarray) -> int:
    """The first layer from which the top token is the last layer's to the end."""
    answer = top_ids[-1]
    layer = len(top_ids) - 1
    while layer > 0 and top_ids[layer - 1] == answer:
        layer -= 1
    return layer


def logit_lens(engine: Any, text: str, *, show: int = 5, chat: bool = False) -> Lens:
    """What every layer of `engine`'s model would predict after `text` (one forward pass).

    Example::

        lens = logit_lens(engine, "The capital of France is")
        lens.answer.label, lens.settles       # the model's answer, and where it settles
    """
    model, tokenizer = held_model(engine, "%llm_next --lens")
    asked = prompt(tokenizer, text, chat=chat, magic="%llm_next --lens")
    probabilities = lens_probabilities(model, asked.ids)
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :show]
    unique = [int(i) for i in np.unique(order)]
    names = dict(zip(unique, labels(tokenizer, unique), strict=True))
    rows = tuple(
        tuple(LensToken(int(i), names[int(i)], float(p[i])) for i in top)
        for top, p in zip(order, probabilities, strict=True)
    )
    answer_id = int(order[-1, 0])
    return Lens(
        name=engine.name,
        text=text,
        prompt_tokens=len(asked.ids),
        rows=rows,
        answer=rows[-1][0],
        answer_probabilities=tuple(float(p) for p in probabilities[:, answer_id]),
        settles=settling_layer(np.argmax(probabilities, axis=1)),
        probabilities=probabilities,
    )


def norm_path(model: Any) -> str:
    """`model.model.norm`: how `--code` names the final norm."""
    norm = final_norm(model)
    for name, module in model.named_modules():
        if module is norm:
            return f"model.{name}"
    return "final_norm"


def lens_code(load: str, text: str, norm: str) -> str:
    """`--code`: plain transformers lines that give the same rows."""
    return "\n".join(
        [
            load,
            "",
            f"text = {text!r}",
            "inputs = tokenizer(text, return_tensors='pt').to(model.device)",
            "with torch.no_grad():",
            "    output = model(**inputs, output_hidden_states=True)",
            f"    norm, head = {norm}, model.get_output_embeddings()",
            "    # hidden_states[-1] already went through the final norm: the last row is the logits.",
            "    logits = [head(norm(state[0, -1])) for state in output.hidden_states[:-1]]",
            "    logits.append(output.logits[0, -1])",
            "probabilities = torch.softmax(torch.stack(logits).float(), dim=-1)  # [layers + 1, vocabulary]",
            "for layer, p in enumerate(probabilities):",
            "    top = torch.topk(p, 3)",
            "    print(layer, [(tokenizer.decode([int(i)]), round(float(q), 4)) for q, i in zip(top.values, top.indices)])",
        ]
    )


__all__ = ["Lens", "LensToken", "final_norm", "lens_code", "logit_lens", "norm_path", "settling_layer"]
