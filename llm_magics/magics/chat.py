"""%%llm_chat, %%llm_complete, %llm_history and %llm_reset: thin wrappers over `llm_magics.chat`.

Each magic parses its options, resolves them against the traits below (a flag left out falls back
to its trait), calls the core, and shows the result through `llm_magics.display.chat`.
"""

from __future__ import annotations

import keyword
import time
from argparse import Namespace
from collections.abc import Callable
from typing import Any

from IPython.core.magic import cell_magic, line_magic
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Enum, Float, Int, Unicode

from .. import chat as core
from .. import decoding
from ..errors import GenerationInterrupted, InvalidOption
from ..registry import ModelEntry
from ._base import SessionMagics, show, unquote

_PLAIN_NOTICE_KEY = "plain_template_notice_shown"

_GENERATION_ARGUMENTS = [
    argument(
        "--max-new-tokens",
        type=int,
        metavar="N",
        help="Most tokens to generate (default: LlmMagics.max_new_tokens).",
    ),
    argument("--temperature", type=float, metavar="T", help="Sampling temperature; 0 means greedy decoding."),
    argument(
        "--top-p",
        type=float,
        metavar="P",
        help="Nucleus sampling: keep the smallest set of tokens with this mass.",
    ),
    argument("--top-k", type=int, metavar="K", help="Sample among the K most likely tokens (0: no limit)."),
    argument("--repetition-penalty", type=float, metavar="R", help="Penalise repeated tokens (1: none)."),
    argument("--seed", type=int, metavar="S", help="Seed the sampler, for a reproducible sampled reply."),
    argument("--no-stream", action="store_true", help="Show the reply only when it is complete."),
    argument(
        "--out", metavar="VAR", help="Also keep the reply text in this variable (it is always in _llm_reply)."
    ),
    argument("--no-interpolate", action="store_true", help="Send {name} references as written."),
]


def _generation_arguments(func: Any) -> Any:
    # Applied last-first, so `--help` lists them in the order written above.
    for decorator in reversed(_GENERATION_ARGUMENTS):
        func = decorator(func)
    return func


class ChatMagics(SessionMagics):
    """Chat and completion magics, with the generation defaults as configurable traits."""

    max_new_tokens = Int(256, help="Most tokens a reply may have (--max-new-tokens).").tag(config=True)
    temperature = Float(
        0.0,
        help="Sampling temperature (--temperature); 0 decodes greedily, so a cell gives the same reply every run.",
    ).tag(config=True)
    top_p = Float(1.0, help="Nucleus sampling mass (--top-p), used when temperature > 0.").tag(config=True)
    top_k = Int(50, help="Sample among this many most likely tokens (--top-k; 0: no limit).").tag(config=True)
    repetition_penalty = Float(1.0, help="Penalty for repeating tokens (--repetition-penalty; 1: none).").tag(
        config=True
    )
    seed = Int(
        None, allow_none=True, help="Seed for sampling (--seed); None leaves torch's generator as it is."
    ).tag(config=True)
    system_prompt = Unicode(
        "",
        help="System message for new conversations (--system overrides it); empty: the model's own default.",
    ).tag(config=True)
    stream = Bool(True, help="Show replies while they are generated (--no-stream turns it off once).").tag(
        config=True
    )
    stream_interval = Float(
        0.1,
        min=0.0,
        help="Seconds between updates of a streaming reply in a notebook; tokens in between are batched.",
    ).tag(config=True)
    reuse_cache = Bool(
        True,
        help="Keep each conversation's key/value cache between turns, so only the new part of the prompt is computed.",
    ).tag(config=True)

    cpu_decoding = Enum(
        list(decoding.MODES),
        default_value=decoding.EXACT,
        help="How models on CPU decode. 'exact': transformers' tokens, with a key/value cache that grows in "
        "place instead of being copied every token. 'fastest': also grouped-query attention without copies "
        "(decoding slows down much less late in a long conversation; in bfloat16 a greedy reply can differ from "
        "transformers' at a near tie). 'transformers': transformers' defaults.",
    ).tag(config=True)

    #: Where streaming and the footer's timings read the time; tests swap in a fake clock.
    clock: Callable[[], float] = staticmethod(time.perf_counter)

    @magic_arguments()
    @argument("name", nargs="?", help="Loaded model to chat with (default: the active one).")
    @argument("--system", metavar="TEXT", help="Set the system message ('' removes it).")
    @argument("--new", action="store_true", help="Start a fresh conversation.")
    @_generation_arguments
    @cell_magic
    def llm_chat(self, line: str, cell: str) -> None:
        """Send the cell as a message to a loaded model and stream its reply.

        Each model keeps its own conversation, so the next %%llm_chat continues it. `{name}` in
        the cell is replaced by that variable's value (`{In[3]}`, `{Out[3]}` work too; unknown
        names stay as written). The reply is kept in `_llm_reply` (and in VAR with --out).
        Press the stop button to interrupt: the partial reply is kept.

        Example::

            %%llm_chat --system "Answer in one sentence." --temperature 0
            What is the capital of {country}?
        """
        args = _parse(self.llm_chat, line)
        entry, options = self._prepare_generation(args, cell, "%%llm_chat")
        message = self.interpolate(cell, not args.no_interpolate).strip()
        if not message:
            raise InvalidOption("The message is empty once {name} references are filled in.")
        conversation = core.Conversation() if args.new else core.get_conversation(entry)
        system = args.system
        if system is None and not conversation.messages and self.system_prompt:
            system = self.system_prompt
        prepared = core.prepare_chat(
            entry.tokenizer,
            conversation,
            message,
            max_new_tokens=options.max_new_tokens,
            context_length=entry.context_window(),
            system=system,
        )
        self._notices(entry, prepared)

        from ..display.chat import ReplyView

        with self._stream(ReplyView, args) as stream:
            reply = core.chat(
                entry,
                conversation,
                prepared,
                options,
                on_text=stream.update,
                reuse_cache=self.reuse_cache,
                cpu_decoding=self.cpu_decoding,
                clock=self.clock,
            )
            stream.finish(reply, _footer(reply, entry))
        if args.new:
            core.set_conversation(entry, conversation)
        self._keep(reply, args.out)

    @magic_arguments()
    @argument("name", nargs="?", help="Loaded model to use (default: the active one).")
    @_generation_arguments
    @cell_magic
    def llm_complete(self, line: str, cell: str) -> None:
        """Continue the cell's text with a loaded model: raw completion, no chat template.

        This is how base (non-instruct) models are meant to be used; the conversation is not
        touched. The continuation is kept in `_llm_reply` (and in VAR with --out).

        Example::

            %%llm_complete --max-new-tokens 20
            Once upon a time
        """
        args = _parse(self.llm_complete, line)
        entry, options = self._prepare_generation(args, cell, "%%llm_complete")
        text = self.interpolate(cell, not args.no_interpolate)
        # A trailing space changes the next token, so only the cell's final newline is dropped.
        prompt = text[:-1] if text.endswith("\n") else text

        def view(continuation: str, footer: str, state: str) -> Any:
            from ..display.chat import CompletionView

            return CompletionView(prompt, continuation, footer, state)

        with self._stream(view, args, prefix=prompt) as stream:
            reply = core.complete(
                entry,
                prompt,
                options,
                on_text=stream.update,
                cpu_decoding=self.cpu_decoding,
                clock=self.clock,
            )
            stream.finish(reply, _footer(reply, entry))
        self._keep(reply, args.out)

    @magic_arguments()
    @argument("name", nargs="?", help="Loaded model whose conversation to use (default: the active one).")
    @argument("--json", action="store_true", help="Print the conversation as JSON.")
    @argument("--save", metavar="PATH", help="Write the conversation to PATH (.json or .md).")
    @argument("--load", metavar="PATH", help="Replace the conversation with the one in PATH (.json or .md).")
    @line_magic
    def llm_history(self, line: str) -> None:
        """Show a model's conversation, or save it to a file and load it back.

        Colab runtimes and kernels are temporary: save a conversation you want to continue later.

        Example::

            %llm_history --save chat.json
            %llm_history --load chat.json
        """
        args = _parse(self.llm_history, line)
        if args.save and args.load:
            raise InvalidOption("Use --save or --load, not both.")
        entry = self.registry.get(args.name)
        if args.load:
            conversation = core.Conversation.load(args.load)
            core.set_conversation(entry, conversation)
            _show_notice(
                f"Loaded {len(conversation.messages)} messages into the conversation with {entry.name}.",
                "success",
            )
            return
        conversation = entry.state.get("conversation") or core.Conversation()
        if args.save:
            path = conversation.save(args.save, model=entry.name)
            _show_notice(f"Saved {len(conversation.messages)} messages to {path}.", "success")
        if args.json:
            print(conversation.to_json(entry.name))
        elif not args.save:
            from ..display.chat import ConversationView

            show(ConversationView(conversation.messages, entry.name))

    @magic_arguments()
    @argument("name", nargs="?", help="Loaded model whose conversation to forget (default: the active one).")
    @line_magic
    def llm_reset(self, line: str) -> None:
        """Forget a model's conversation (and its cached keys and values); the next chat starts fresh.

        Example::

            %llm_reset
        """
        args = _parse(self.llm_reset, line)
        entry = self.registry.get(args.name)
        core.set_conversation(entry, core.Conversation())
        _show_notice(f"Started a fresh conversation with {entry.name}.", "success")

    # -- shared steps ------------------------------------------------------------------------------

    def _prepare_generation(
        self, args: Namespace, cell: str, magic: str
    ) -> tuple[ModelEntry, core.GenerationOptions]:
        """Check everything before anything changes: the cell, --out, the model, the options."""
        if not cell.strip():
            raise InvalidOption(f"The cell is empty: write the text below the {magic} line.")
        if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
            raise InvalidOption(f"--out needs a variable name, not {args.out!r}.")
        entry = self.registry.get(args.name)
        core.require_model(entry)
        options = core.GenerationOptions(
            max_new_tokens=self._pick(args.max_new_tokens, self.max_new_tokens),
            temperature=self._pick(args.temperature, self.temperature),
            top_p=self._pick(args.top_p, self.top_p),
            top_k=self._pick(args.top_k, self.top_k),
            repetition_penalty=self._pick(args.repetition_penalty, self.repetition_penalty),
            seed=self._pick(args.seed, self.seed),
        )
        options.validate(entry.context_window())
        return entry, options

    @staticmethod
    def _pick(flag: Any, trait: Any) -> Any:
        return trait if flag is None else flag

    def _stream(self, view: Any, args: Namespace, prefix: str = "") -> Any:
        from ..display.chat import ReplyStream
        from ..display.notice import is_rich

        return ReplyStream(
            view,
            rich=is_rich(self.shell),
            stream=self.stream and not args.no_stream,
            interval=self.stream_interval,
            clock=self.clock,
            prefix=prefix,
        )

    def _notices(self, entry: ModelEntry, prepared: core.PreparedTurn) -> None:
        if prepared.plain_template and not entry.state.get(_PLAIN_NOTICE_KEY):
            entry.state[_PLAIN_NOTICE_KEY] = True
            _show_notice(
                f"{entry.name} has no chat template, so messages use a plain 'User: … Assistant:' transcript "
                "(llm_magics.chat.PLAIN_TEMPLATE). A base model may do better with %%llm_complete.",
                "info",
            )
        if prepared.dropped_turns:
            turns = "turn" if prepared.dropped_turns == 1 else f"{prepared.dropped_turns} turns"
            _show_notice(
                f"Dropped the oldest {turns} of the conversation to fit {entry.name}'s "
                f"{entry.context_window()}-token context with room for the reply (the system message stays).",
                "warning",
            )

    def _keep(self, reply: core.Reply, out: str | None) -> None:
        """Store the reply in the user's namespace; after an interrupt, end the cell as an error."""
        self.user_ns["_llm_reply"] = reply.text
        if out:
            self.user_ns[out] = reply.text
        if reply.interrupted:
            from ..display.chat import count

            # An error, like any interrupted cell, so that "Run all" stops here.
            raise GenerationInterrupted(
                f"Stopped after {count(reply.stats.new_tokens, 'new token')}; "
                + ("the partial reply is kept." if reply.token_ids else "nothing was added.")
            )


def _footer(reply: core.Reply, entry: ModelEntry) -> str:
    from ..display.chat import footer_text

    return footer_text(reply.stats, reply.finish_reason, entry.name)


def _parse(magic: Any, line: str) -> Namespace:
    args = parse_argstring(magic, line)
    for key, value in vars(args).items():
        if isinstance(value, str):
            setattr(args, key, unquote(value))
    return args


def _show_notice(text: str, kind: str) -> None:
    from ..display.notice import Notice

    show(Notice(text, kind))
