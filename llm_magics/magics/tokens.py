"""%tokens / %%tokens: see how a model's tokenizer cuts text, compare tokenizers, read a chat template."""

from __future__ import annotations

import argparse
from typing import Any

from IPython.core.magic import line_cell_magic, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Int

from ..code import tokens_code
from ..display.pipe import CodeBlock
from ..display.tokens import TokenExplorer, TokenView
from ..engines.base import Chats, Engine, ScoresTokens, Tokenizes, require
from ..engines.transformers import TokenizerEngine
from ..errors import InvalidOption
from ..prompts import has_chat_template, render_plain
from ..tokens import EXAMPLE_CONVERSATION, analyse, analyse_chat, with_probabilities
from ._base import SessionMagics, parse, show


class TokenMagics(SessionMagics):
    tokens_max_tokens = Int(
        2000,
        help="Tokens %tokens draws before cutting the view with a note (counts stay exact); --max-tokens overrides.",
    ).tag(config=True)
    tokens_show_ids = Bool(False, help="Show each token's id under it in %tokens views (as with --ids).").tag(
        config=True
    )
    tokens_live_max_tokens = Int(
        300,
        help="Tokens %tokens --live draws (each pause in typing re-sends the view); --max-tokens overrides.",
    ).tag(config=True)
    tokens_top_k = Int(5, help="Alternatives listed per token by %tokens --probs.").tag(config=True)

    @magic_arguments()
    @argument(
        "--model",
        "-m",
        metavar="NAME",
        help="The loaded model or tokenizer to use (default: the active one).",
    )
    @argument("--ids", action="store_true", default=None, help="Show each token's id under it.")
    @argument("--compare", default=None, metavar="NAME2", help="Show a second loaded tokenizer side by side.")
    @argument(
        "--probs",
        action="store_true",
        help="Colour tokens by their probability under the model (one forward pass).",
    )
    @argument(
        "--chat", action="store_true", help="Show the model's conversation as its chat template renders it."
    )
    @argument("--live", action="store_true", help="An explorer that re-tokenises as you type (ipywidgets).")
    @argument(
        "--max-tokens",
        type=int,
        metavar="N",
        default=None,
        help="Tokens drawn before the view is cut (counts stay exact).",
    )
    @argument(
        "--no-interpolate", action="store_true", help="Keep {name} as written instead of substituting it."
    )
    @argument(
        "--code", action="store_true", help="Also show the plain transformers code: text to ids and back."
    )
    @argument(
        "text",
        metavar="TEXT",
        nargs=argparse.REMAINDER,
        help="The text (quote it to keep leading or repeated spaces).",
    )
    # IPython would expand {name} and $name in the line itself; the text is interpolated here
    # instead, by the same rule as %%llm_chat's cells (and --no-interpolate can turn it off).
    @no_var_expand
    @line_cell_magic
    def tokens(self, line: str = "", cell: str | None = None) -> None:
        """Show how a loaded tokenizer splits text into tokens.

        Each token is a coloured span (hover for its id and vocabulary string); spaces, tabs and
        newlines are drawn as markers, special tokens as badges, and a character split across
        byte-level tokens is shown once with all its ids. The footer counts tokens and characters
        and shows how much of the context window the text uses. A tokenizer-only load is enough.

        Examples::

            %tokens The quick brown fox
            %tokens --ids "  two leading spaces"
            %tokens --compare gpt2 Tokenizers differ: naïve café 日本語 🙂
            %tokens --probs Paris is the capital of France.
            # the conversation, through the chat template
            %tokens --chat
            # type and watch (needs ipywidgets)
            %tokens --live
            # and the AutoTokenizer code that gives the same ids
            %tokens --code Hello world

            %%tokens --max-tokens 500
            A longer text, {variable} substituted from your namespace.

        `--live` redraws when typing pauses, showing the first 300 tokens (counts stay exact).

        Settings: `%config LlmMagics.tokens_max_tokens = 5000`, `tokens_live_max_tokens`,
        `tokens_show_ids`, `tokens_top_k`.
        """
        # The text itself may hold a lone quote (an apostrophe, a path).
        args = parse(self.tokens, line, unclosed_hint="close the quote, or put the text in a %%tokens cell")
        text = self.text_after_options(line, args, cell, "tokens")
        max_tokens = self.tokens_max_tokens if args.max_tokens is None else args.max_tokens
        if max_tokens < 1:
            raise InvalidOption(f"--max-tokens must be at least 1, not {max_tokens}.")
        show_ids = self.tokens_show_ids if args.ids is None else args.ids
        engine = self._tokenizing(args.model)
        if args.code and (args.chat or args.live or not isinstance(engine, TokenizerEngine)):
            raise InvalidOption(
                "--code shows the code for %tokens TEXT with a tokenizer loaded here; drop --chat/--live."
            )
        if args.chat:
            if text or args.compare or args.probs or args.live:
                raise InvalidOption(
                    "--chat shows the model's conversation; it takes no TEXT, --compare, --probs or --live."
                )
            self._show_chat(engine, show_ids, max_tokens)
        elif args.live:
            if args.compare or args.probs:
                raise InvalidOption(
                    "--live shows one tokenizer at a time (pick it in the explorer); drop --compare/--probs."
                )
            # Live mode redraws on every pause in typing: it draws fewer tokens, so an update stays small.
            live_max = self.tokens_live_max_tokens if args.max_tokens is None else args.max_tokens
            if live_max < 1:
                raise InvalidOption(f"tokens_live_max_tokens must be at least 1, not {live_max}.")
            self._show_live(engine, text, show_ids, live_max)
        else:
            if not text:
                raise InvalidOption(
                    "Nothing to tokenise: give TEXT after %tokens, or use %%tokens with the text in the cell."
                )
            engines = [engine] + ([self._tokenizing(args.compare)] if args.compare else [])
            if args.code:
                show(CodeBlock(tokens_code(engine.plan, text, fallback=engine.describe().source)))
            self._show_text(engines, text, show_ids, max_tokens, args.probs)

    def _tokenizing(self, name: str | None) -> Any:
        return require(self.registry.get(name), Tokenizes, "%tokens")

    def _show_text(self, engines: list[Any], text: str, show_ids: bool, max_tokens: int, probs: bool) -> None:
        """%tokens TEXT: one view per tokenizer, coloured by probability with --probs."""

        if probs:
            for engine in engines:
                require(engine, ScoresTokens, "%tokens --probs")
        views = []
        for engine in engines:
            view = analyse(
                engine.tokenizer,
                text,
                name=engine.name,
                context_length=engine.context_window(),
                max_tokens=max_tokens,
            )
            if probs:
                with_probabilities(view, engine, top_k=self.tokens_top_k)
            views.append(view)
        show(TokenView(views, show_ids=show_ids, max_tokens=max_tokens))

    def _show_chat(self, engine: Any, show_ids: bool, max_tokens: int) -> None:
        """%tokens --chat: the conversation exactly as the chat template feeds it to the model."""

        messages, example = _conversation(engine)
        view = analyse_chat(
            engine.tokenizer,
            messages,
            name=engine.name,
            context_length=engine.context_window(),
            max_tokens=max_tokens,
            plain=render_plain,
        )
        if not has_chat_template(engine.tokenizer):
            view.notes.append(
                f"{engine.name} has no chat template, so %%llm_chat sends it this plain transcript instead."
            )
        if example:
            view.notes.append(
                f"No conversation with {engine.name} yet, so this is an example conversation as {engine.name} "
                "would receive it; chat with %%llm_chat and run %tokens --chat again to see yours."
            )
        show(TokenView([view], show_ids=show_ids, max_tokens=max_tokens, title="as the model receives it"))

    def _show_live(self, engine: Any, text: str, show_ids: bool, max_tokens: int) -> None:
        """%tokens --live: an explorer that re-tokenises as you type, over every loaded tokenizer."""

        by_name = {item.name: item for item in self.registry if isinstance(item, Tokenizes)}

        def render(name: str, typed: str) -> TokenView:
            chosen = by_name[name]
            view = analyse(
                chosen.tokenizer,
                typed,
                name=name,
                context_length=chosen.context_window(),
                max_tokens=max_tokens,
            )
            return TokenView([view], show_ids=show_ids, max_tokens=max_tokens)

        show(TokenExplorer(list(by_name), render, text=text, name=engine.name))


def _conversation(engine: Engine) -> tuple[list[dict[str, str]], bool]:
    """The engine's conversation (kept by the chat magics), or an example when nothing was said yet.

    A system message alone is not a conversation yet: it is kept, and example turns follow it.
    """

    messages = list(engine.session.conversation.messages) if isinstance(engine, Chats) else []
    if any(message.get("role") != "system" for message in messages):
        return messages, False
    system = [message for message in messages if message.get("role") == "system"]
    example = [message for message in EXAMPLE_CONVERSATION if message["role"] != "system" or not system]
    return system + example, True
