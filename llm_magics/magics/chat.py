"""%%llm_chat, %%llm_complete, %llm_history and %llm_reset: thin wrappers over the engines.

Each magic parses its options, resolves them against the traits below (a flag left out falls back
to its trait), asks the engine for what it can do (`Chats`, `Completes`), and shows the result
through `llm_magics.display.chat`.
"""

from __future__ import annotations

import weakref
from argparse import Namespace
from typing import Any

from IPython.core.magic import cell_magic, line_magic, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Float, Int, Unicode

from .. import code
from ..conversation import Conversation, check_text
from ..display import notice
from ..display.alternatives import AlternativesView
from ..display.chat import (
    Column,
    CompareView,
    CompletionView,
    ConversationView,
    ReplyStream,
    ReplyView,
    ViewState,
    count,
    footer_text,
)
from ..display.notice import NoticeKind
from ..display.pipe import OPENAI_CLIENT, CodeBlock
from ..engines.base import Chats, Completes, Engine, require
from ..engines.remote import RemoteEngine
from ..engines.transformers import TransformersEngine
from ..errors import GenerationInterrupted, InvalidOption
from ..inside.alternatives import KEPT, check_branches, check_show, last_scores, reply_alternatives
from ..values import GenerationOptions, PreparedTurn, Reply, TokenScores
from ._base import check_variable_name, parse, show
from .settings import SharedSettings, configure_engine, generation_options, pick

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
    argument("--code", action="store_true", help="Also show the plain transformers code for this cell."),
]


def _generation_arguments(func: Any) -> Any:
    # Applied last-first, so `--help` lists them in the order written above.
    for decorator in reversed(_GENERATION_ARGUMENTS):
        func = decorator(func)
    return func


class ChatMagics(SharedSettings):
    """Chat and completion magics, with the generation defaults as configurable traits."""

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
    alternatives_show = Int(5, help="Runners-up listed per token by --alternatives (--show).").tag(
        config=True
    )
    alternatives_expand = Int(
        3,
        help="--alternatives computes branches (where each runner-up leads) for this many of the reply's least "
        "likely tokens; each costs one batched generate (0: none).",
    ).tag(config=True)
    alternatives_branch_tokens = Int(
        8, help="Tokens of greedy continuation in each --alternatives branch."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._told_plain_template: weakref.WeakSet[Any] = weakref.WeakSet()

    @magic_arguments()
    @argument("name", nargs="?", help="Loaded model to chat with (default: the active one).")
    @argument("--system", metavar="TEXT", help="Set the system message ('' removes it).")
    @argument("--new", action="store_true", help="Start a fresh conversation.")
    @argument(
        "--compare",
        nargs="+",
        metavar="NAME",
        help="Also send the message to these loaded models (each keeps its own conversation); replies side by side.",
    )
    @argument(
        "--alternatives",
        action="store_true",
        help="Also show the reply's tokens coloured by probability, with their runners-up and where they lead.",
    )
    @argument("--show", type=int, metavar="N", help="Runners-up per token with --alternatives.")
    @_generation_arguments
    @no_var_expand
    @cell_magic
    def llm_chat(self, line: str, cell: str) -> None:
        """Send the cell as a message to a loaded model and stream its reply.

        Each model keeps its own conversation, so the next %%llm_chat continues it. `{name}` in
        the cell is replaced by that variable's value (`{In[3]}`, `{Out[3]}` work too; unknown
        names stay as written). The reply is kept in `_llm_reply` (and in VAR with --out).
        Press the stop button to interrupt: the partial reply is kept.

        With --compare, the same message goes to several loaded models, and their replies stream
        into columns side by side (one after another); `_llm_reply` is then a dict by model name.

        Examples::

            %%llm_chat --system "Answer in one sentence." --temperature 0
            What is the capital of {country}?

            %%llm_chat smollm2-135m --compare smol-4bit
            Explain a token in one sentence.
        """
        args = parse(self.llm_chat, line)
        runners = self._alternatives_show(args)
        if args.alternatives and args.compare:
            raise InvalidOption("--alternatives shows one reply; leave out --compare.")
        first, options = self._prepare_generation(args, cell, "%%llm_chat", Chats)
        if args.alternatives:
            options.keep_scores = KEPT
        engines = [first] + [self._capable(name, "%%llm_chat", Chats) for name in args.compare or []]
        names = [engine.name for engine in engines]
        if len(set(names)) < len(names):
            raise InvalidOption(f"--compare needs different models; got {', '.join(names)}.")
        message = self.interpolate(cell, not args.no_interpolate).strip()
        if not message:
            raise InvalidOption("The message is empty once {name} references are filled in.")
        check_text(message, "The message")
        if args.system:
            check_text(args.system, "--system")
        # Every model's turn is prepared before any generates: a message that does not fit one of
        # them changes none of the conversations.
        turns = [
            (engine, *self.prepare_turn(engine, message, options, system=args.system, new=args.new))
            for engine in engines
        ]
        for engine, _, prepared in turns:
            self._notices(engine, prepared)
        if args.code:
            engine, _, prepared = turns[0]
            source = _code(engine, options, messages=prepared.messages, plain=prepared.plain_template)
            if args.alternatives and not isinstance(engine, RemoteEngine):
                source += "\n" + code.alternatives_code(options, runners)
            show(_code_block(engine, source))
        if len(turns) == 1:
            engine, session, prepared = turns[0]
            with self._stream(ReplyView, args) as stream:
                reply = session.respond(prepared, options, on_text=stream.update)
                stream.finish(reply, _footer(reply, engine))
            if args.new:
                engine.adopt(session)
            if args.alternatives and not reply.interrupted:
                self._show_alternatives(engine, reply.scores, runners)
            self._keep(reply, args.out)
        else:
            self._side_by_side(turns, options, args)

    def _side_by_side(
        self, turns: list[tuple[Any, Any, PreparedTurn]], options: GenerationOptions, args: Namespace
    ) -> None:
        """`--compare`: the models answer one after another, each streaming into its own column."""
        columns = [Column(engine.name) for engine, _, _ in turns]
        replies: dict[str, Reply] = {}
        # A compared turn commits to every conversation or to none: if a later model fails (its
        # server is down), the turns already answered are taken back.
        before = [Conversation(session.conversation.messages) for _, session, _ in turns]
        handle = None
        try:
            for index, (engine, session, prepared) in enumerate(turns):

                def view(text: str, footer: str, state: ViewState, index: int = index) -> CompareView:
                    columns[index] = Column(columns[index].name, text, footer, state)
                    return CompareView(columns)

                with self._stream(view, args, prefix=f"── {engine.name} ──\n", handle=handle) as stream:
                    reply = session.respond(prepared, options, on_text=stream.update)
                    stream.finish(reply, _footer(reply, engine))
                handle = stream.handle
                replies[engine.name] = reply
                if reply.interrupted:
                    break
        except BaseException:
            for (_, session, _), conversation in zip(turns, before, strict=True):
                if session.conversation.messages != conversation.messages:
                    session.replace(conversation)
            raise
        if args.new:
            for engine, session, _ in turns[: len(replies)]:
                engine.adopt(session)
        texts = {name: reply.text for name, reply in replies.items()}
        self.user_ns["_llm_reply"] = texts
        if args.out:
            self.user_ns[args.out] = texts
        stopped = next((reply for reply in replies.values() if reply.interrupted), None)
        if stopped is not None:
            raise interrupted(stopped)

    @magic_arguments()
    @argument("name", nargs="?", help="Loaded model to use (default: the active one).")
    @_generation_arguments
    @no_var_expand
    @cell_magic
    def llm_complete(self, line: str, cell: str) -> None:
        """Continue the cell's text with a loaded model: raw completion, no chat template.

        This is how base (non-instruct) models are meant to be used; the conversation is not
        touched. The continuation is kept in `_llm_reply` (and in VAR with --out).

        Example::

            %%llm_complete --max-new-tokens 20
            Once upon a time
        """
        args = parse(self.llm_complete, line)
        engine, options = self._prepare_generation(args, cell, "%%llm_complete", Completes)
        assert isinstance(engine, Completes)
        text = self.interpolate(cell, not args.no_interpolate)
        # A trailing space changes the next token, so only the cell's final newline is dropped.
        prompt = text[:-1] if text.endswith("\n") else text
        check_text(prompt, "The prompt")
        if args.code:
            show(_code_block(engine, _code(engine, options, prompt=prompt)))

        def view(continuation: str, footer: str, state: ViewState) -> Any:
            return CompletionView(prompt, continuation, footer, state)

        with self._stream(view, args, prefix=prompt) as stream:
            reply = engine.complete(prompt, options, on_text=stream.update)
            stream.finish(reply, _footer(reply, engine))
        self._keep(reply, args.out)

    @magic_arguments()
    @argument("name", nargs="?", help="Loaded model whose conversation to use (default: the active one).")
    @argument("--json", action="store_true", help="Print the conversation as JSON.")
    @argument("--save", metavar="PATH", help="Write the conversation to PATH (.json or .md).")
    @argument("--load", metavar="PATH", help="Replace the conversation with the one in PATH (.json or .md).")
    @argument("--force", action="store_true", help="Let --save replace a file that it did not write.")
    @argument(
        "--alternatives",
        action="store_true",
        help="Show the last reply's alternatives (asked with --alternatives).",
    )
    @argument("--show", type=int, metavar="N", help="Runners-up per token with --alternatives.")
    @no_var_expand
    @line_magic
    def llm_history(self, line: str) -> None:
        """Show a model's conversation, or save it to a file and load it back.

        Colab runtimes and kernels are temporary: save a conversation you want to continue later.
        A save replaces only a file that a save wrote (add --force for any other), and loads back
        to exactly the same messages; Markdown files stay readable.

        Example::

            %llm_history --save chat.json
            %llm_history --load chat.json
            %llm_history --alternatives --show 3

        --alternatives shows the last reply's alternatives, if it was asked with
        `%%llm_chat --alternatives`; they live in memory only, and are not saved.
        """
        args = parse(self.llm_history, line)
        runners = self._alternatives_show(args)
        if args.alternatives:
            if args.save is not None or args.load is not None or args.json:
                raise InvalidOption(
                    "--alternatives shows the last reply; use it without --save, --load or --json."
                )
            engine = self._chat_engine(args.name, "%llm_history --alternatives")
            self._show_alternatives(engine, last_scores(engine), runners)
            return
        if args.save is not None and args.load is not None:
            raise InvalidOption("Use --save or --load, not both.")
        if args.force and args.save is None:
            raise InvalidOption("--force only applies to --save.")
        engine = self._chat_engine(args.name, "%llm_history")
        if args.load is not None:
            conversation = Conversation.load(args.load)
            engine.session.replace(conversation)
            _show_notice(
                f"Loaded {len(conversation.messages)} messages into the conversation with {engine.name}.",
                NoticeKind.SUCCESS,
            )
            return
        conversation = engine.session.conversation
        if args.save is not None:
            path = conversation.save(args.save, model=engine.name, force=args.force)
            _show_notice(f"Saved {len(conversation.messages)} messages to {path}.", NoticeKind.SUCCESS)
        if args.json:
            print(conversation.to_json(engine.name))
        elif args.save is None:
            show(ConversationView(conversation.messages, engine.name))

    @magic_arguments()
    @argument("name", nargs="?", help="Loaded model whose conversation to forget (default: the active one).")
    @no_var_expand
    @line_magic
    def llm_reset(self, line: str) -> None:
        """Forget a model's conversation (and its cached keys and values); the next chat starts fresh.

        Example::

            %llm_reset
        """
        args = parse(self.llm_reset, line)
        engine = self._chat_engine(args.name, "%llm_reset")
        engine.session.replace(Conversation())
        _show_notice(f"Started a fresh conversation with {engine.name}.", NoticeKind.SUCCESS)

    # -- shared steps ------------------------------------------------------------------------------

    def _alternatives_show(self, args: Namespace) -> int:
        """--show, checked before anything changes; it needs --alternatives."""
        if args.show is not None and not args.alternatives:
            raise InvalidOption("--show applies to --alternatives.")
        runners = pick(args.show, self.alternatives_show)
        check_show(runners)
        check_branches(self.alternatives_expand, self.alternatives_branch_tokens)
        return int(runners)

    def _show_alternatives(self, engine: Engine, scores: TokenScores | None, runners: int) -> None:
        if scores is None:
            _show_notice(
                f"{engine.name} returned no log-probabilities for this reply, so it has no alternatives to show.",
                NoticeKind.WARNING,
            )
            return

        alternatives = reply_alternatives(
            engine,
            scores,
            show=runners,
            expand=self.alternatives_expand,
            branch_tokens=self.alternatives_branch_tokens,
        )
        show(AlternativesView(alternatives))

    def prepare_turn(
        self, engine: Any, message: str, options: GenerationOptions, *, system: str | None, new: bool
    ) -> tuple[Any, PreparedTurn]:
        """`engine`'s next turn, checked and prepared (in a fresh session with `new`); its
        conversation is unchanged until the session responds. A new conversation gets the
        `system_prompt` trait unless `system` is given."""
        options.validate(engine.context_window())
        session = engine.new_session() if new else engine.session
        if system is None and not session.conversation.messages and self.system_prompt:
            system = self.system_prompt
        return session, session.prepare(message, max_new_tokens=options.max_new_tokens, system=system)

    def _prepare_generation(
        self, args: Namespace, cell: str, magic: str, capability: type
    ) -> tuple[Engine, GenerationOptions]:
        """Check everything before anything changes: the cell, --out, the engine, the options."""
        if not cell.strip():
            raise InvalidOption(f"The cell is empty: write the text below the {magic} line.")
        if args.out is not None:
            check_variable_name(args.out, "--out")
        engine = self._capable(args.name, magic, capability)
        options = generation_options(self, args)
        options.validate(engine.context_window())
        return engine, options

    def _capable(self, name: str | None, magic: str, capability: type) -> Any:
        """The named engine, configured to run now, if it has `capability`; else one line saying why not."""
        engine = require(self.registry.get(name), capability, magic)
        configure_engine(self, engine)
        return engine

    def _chat_engine(self, name: str | None, magic: str) -> Any:
        return require(self.registry.get(name), Chats, magic)

    def _stream(self, view: Any, args: Namespace, prefix: str = "", handle: Any = None) -> Any:

        return ReplyStream(
            view,
            rich=notice.is_rich(self.shell),
            stream=self.stream and not args.no_stream,
            interval=self.stream_interval,
            clock=self.clock,
            prefix=prefix,
            handle=handle,
        )

    def _notices(self, entry: Engine, prepared: PreparedTurn) -> None:
        if prepared.plain_template and entry not in self._told_plain_template:
            self._told_plain_template.add(entry)  # once per engine: a weak set, so it frees nothing late
            _show_notice(
                f"{entry.name} has no chat template, so messages use a plain 'User: … Assistant:' transcript "
                "(llm_magics.prompts.PLAIN_TEMPLATE). A base model may do better with %%llm_complete.",
                NoticeKind.INFO,
            )
        if prepared.dropped_turns:
            turns = "turn" if prepared.dropped_turns == 1 else f"{prepared.dropped_turns} turns"
            _show_notice(
                f"Dropped the oldest {turns} of the conversation to fit {entry.name}'s "
                f"{entry.context_window()}-token context with room for the reply (the system message stays).",
                NoticeKind.WARNING,
            )

    def _keep(self, reply: Reply, out: str | None) -> None:
        """Store the reply in the user's namespace; after an interrupt, end the cell as an error."""
        self.user_ns["_llm_reply"] = reply.text
        if out:
            self.user_ns[out] = reply.text
        if reply.interrupted:
            raise interrupted(reply)


def interrupted(reply: Reply) -> GenerationInterrupted:
    """The error an interrupted reply ends its cell with (like any interrupted cell, so that "Run
    all" stops there): how far it got, and whether the partial reply is kept."""
    cause = f" because {reply.problem.rstrip('.')}" if reply.problem else ""
    return GenerationInterrupted(
        f"Stopped after {count(reply.stats.new_tokens, 'new token')}{cause}; "
        + ("nothing was added." if reply.empty else "the partial reply is kept.")
    )


def _code(
    engine: Engine,
    options: GenerationOptions,
    *,
    messages: list[Any] | None = None,
    prompt: str | None = None,
    plain: bool = False,
) -> str:
    """`--code`: the transformers code of a local model, the `openai` call of a model on a server
    (transformers code could not run it: there are no weights here)."""

    if isinstance(engine, RemoteEngine):
        return code.remote_generate_code(
            engine.endpoint.api, engine.model, engine.key_variable, options, messages=messages, prompt=prompt
        )
    plan = engine.plan if isinstance(engine, TransformersEngine) else None
    fallback = engine.describe().source
    if messages is not None:
        return code.chat_code(plan, messages, options, plain_template=plain, fallback=fallback)
    assert prompt is not None
    return code.complete_code(plan, prompt, options, fallback=fallback)


def _code_block(engine: Engine, source: str) -> CodeBlock:
    return CodeBlock(source, OPENAI_CLIENT) if isinstance(engine, RemoteEngine) else CodeBlock(source)


def _footer(reply: Reply, engine: Engine) -> str:

    footer = footer_text(reply.stats, reply.finish_reason, engine.name)
    return " · ".join([footer, *([reply.problem] if reply.problem else []), *reply.notes])


def _show_notice(text: str, kind: NoticeKind) -> None:

    show(notice.Notice(text, kind))
