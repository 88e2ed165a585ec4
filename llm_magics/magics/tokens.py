"""%tokens / %%tokens: see how a model's tokenizer cuts text, compare tokenizers, read a chat template."""

from __future__ import annotations

import argparse
from typing import Any

from IPython.core.magic import line_cell_magic, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.utils.process import arg_split
from traitlets import Bool, Int

from ..errors import InvalidOption
from ..registry import ModelEntry, has_chat_template
from ._base import SessionMagics, show, unquote


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
            %tokens --chat                 # the conversation, through the chat template
            %tokens --live                 # type and watch (needs ipywidgets)

            %%tokens --max-tokens 500
            A longer text, {variable} substituted from your namespace.

        `--live` redraws when typing pauses, showing the first 300 tokens (counts stay exact).

        Settings: `%config LlmMagics.tokens_max_tokens = 5000`, `tokens_live_max_tokens`,
        `tokens_show_ids`, `tokens_top_k`.
        """
        from ..display.tokens import TokenExplorer, TokenView
        from ..tokens import analyse, analyse_chat, with_probabilities

        try:
            args = parse_argstring(self.tokens, line)
        except ValueError as error:
            # shlex's "No closing quotation": the text itself may hold a lone quote.
            raise InvalidOption(
                f"Could not read the line ({error}): close the quote, or put the text in a %%tokens cell."
            ) from None
        text = self._text(line, args, cell)
        max_tokens = self.tokens_max_tokens if args.max_tokens is None else args.max_tokens
        if max_tokens < 1:
            raise InvalidOption(f"--max-tokens must be at least 1, not {max_tokens}.")
        show_ids = self.tokens_show_ids if args.ids is None else args.ids
        entry = self.registry.get(unquote(args.model))

        if args.chat:
            if text or args.compare or args.probs or args.live:
                raise InvalidOption(
                    "--chat shows the model's conversation; it takes no TEXT, --compare, --probs or --live."
                )
            from ..chat import render_plain

            messages, example = _conversation(entry)
            view = analyse_chat(
                entry.tokenizer,
                messages,
                name=entry.name,
                context_length=entry.context_window(),
                max_tokens=max_tokens,
                plain=render_plain,
            )
            if not has_chat_template(entry.tokenizer):
                view.notes.append(
                    f"{entry.name} has no chat template, so %%llm_chat sends it this plain transcript instead."
                )
            if example:
                view.notes.append(
                    f"No conversation with {entry.name} yet, so this is an example conversation as {entry.name} "
                    "would receive it; chat with %%llm_chat and run %tokens --chat again to see yours."
                )
            show(
                TokenView([view], show_ids=show_ids, max_tokens=max_tokens, title="as the model receives it")
            )
            return None

        if args.live:
            if args.compare or args.probs:
                raise InvalidOption(
                    "--live shows one tokenizer at a time (pick it in the explorer); drop --compare/--probs."
                )
            by_name = {item.name: item for item in self.registry}
            live_max = self.tokens_live_max_tokens if args.max_tokens is None else args.max_tokens
            if live_max < 1:
                raise InvalidOption(f"tokens_live_max_tokens must be at least 1, not {live_max}.")

            def render(name: str, typed: str) -> TokenView:
                chosen = by_name[name]
                view = analyse(
                    chosen.tokenizer,
                    typed,
                    name=name,
                    context_length=chosen.context_window(),
                    max_tokens=live_max,
                )
                return TokenView([view], show_ids=show_ids, max_tokens=live_max)

            show(TokenExplorer(list(by_name), render, text=text, name=entry.name))
            return None

        if not text:
            raise InvalidOption(
                "Nothing to tokenise: give TEXT after %tokens, or use %%tokens with the text in the cell."
            )
        entries = [entry]
        if args.compare:
            entries.append(self.registry.get(unquote(args.compare)))
        if args.probs:
            for item in entries:
                if item.tokenizer_only or item.model is None:
                    raise InvalidOption(
                        f"--probs runs the model, and {item.name} is loaded as a tokenizer only; "
                        "load it again without --tokenizer-only (add --reload) to use --probs."
                    )
        views = []
        for item in entries:
            view = analyse(
                item.tokenizer,
                text,
                name=item.name,
                context_length=item.context_window(),
                max_tokens=max_tokens,
            )
            if args.probs:
                with_probabilities(view, item.model, item.tokenizer, top_k=self.tokens_top_k)
            views.append(view)
        show(TokenView(views, show_ids=show_ids, max_tokens=max_tokens))
        return None

    def _text(self, line: str, args: Any, cell: str | None) -> str:
        """The text to tokenise: the cell, or the line after its options, exactly as typed."""
        if cell is not None:
            if args.text:
                raise InvalidOption("Give the text either after %%tokens or in the cell, not both.")
            return self.interpolate(cell, not args.no_interpolate)
        if not args.text:
            return ""
        # parse_argstring splits on whitespace; the text keeps its own spacing, so it is cut from
        # the line after the option tokens that were consumed.
        argv = arg_split(line, strict=True)
        position = 0
        for option in argv[: len(argv) - len(args.text)]:
            found = line.find(option, position)
            if found < 0:
                raw = " ".join(args.text)
                break
            position = found + len(option)
        else:
            raw = line[position:].strip()
        if len(args.text) == 1:
            raw = unquote(raw) or ""
        return self.interpolate(raw, not args.no_interpolate)


def _conversation(entry: ModelEntry) -> tuple[list[dict[str, str]], bool]:
    """The entry's conversation (kept by the chat magics), or an example when nothing was said yet.

    A system message alone is not a conversation yet: it is kept, and example turns follow it.
    """
    from ..tokens import EXAMPLE_CONVERSATION

    messages = list(getattr(entry.state.get("conversation"), "messages", None) or [])
    if any(message.get("role") != "system" for message in messages):
        return messages, False
    system = [message for message in messages if message.get("role") == "system"]
    example = [message for message in EXAMPLE_CONVERSATION if message["role"] != "system" or not system]
    return system + example, True
