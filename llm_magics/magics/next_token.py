"""%llm_next / %%llm_next: the model's next-token probabilities, and what temperature, top-k and
top-p do to them; a few steps at a time; or an explorer with sliders."""

from __future__ import annotations

import argparse

from IPython.core.magic import line_cell_magic, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Float, Int

from ..display.next_token import NextTokenExplorer, NextTokenView, StepsView
from ..errors import InvalidOption
from ..next_token import (
    MAX_SHOW,
    Sampling,
    next_token_distribution,
    next_token_session,
    next_token_steps,
    require_engine,
)
from ._base import SessionMagics, parse, show


class NextTokenMagics(SessionMagics):
    next_show = Int(10, help="Tokens %llm_next draws as bars (the likeliest first); --show overrides.").tag(
        config=True
    )
    next_temperature = Float(
        1.0,
        help="Temperature %llm_next applies beside the raw distribution (0 is greedy); --temperature overrides.",
    ).tag(config=True)
    next_top_k = Int(0, help="Top-k cut %llm_next shows (0: none); --top-k overrides.").tag(config=True)
    next_top_p = Float(1.0, help="Top-p cut %llm_next shows (1: none); --top-p overrides.").tag(config=True)
    next_runners_up = Int(3, help="Runners-up listed beside each step of %llm_next --steps.").tag(config=True)

    @magic_arguments()
    @argument("--model", "-m", metavar="NAME", help="The loaded model to ask (default: the active one).")
    @argument("--temperature", "-t", type=float, default=None, metavar="T", help="Temperature (0 is greedy).")
    @argument(
        "--top-k", type=int, default=None, metavar="K", help="Keep only the K likeliest tokens (0: no cut)."
    )
    @argument(
        "--top-p",
        type=float,
        default=None,
        metavar="P",
        help="Keep the likeliest tokens up to P (1: no cut).",
    )
    @argument("--show", type=int, default=None, metavar="N", help="How many tokens to draw as bars.")
    @argument(
        "--chat",
        action="store_true",
        help="Continue after the chat template and its generation prompt, as %%%%llm_chat sends TEXT.",
    )
    @argument(
        "--steps", type=int, default=None, metavar="N", help="Choose N tokens one at a time, as a table."
    )
    @argument(
        "--sample", action="store_true", help="With --steps: draw each token instead of taking the likeliest."
    )
    @argument(
        "--seed",
        type=int,
        default=None,
        metavar="S",
        help="With --sample (or --live): the seed, to draw the same tokens again.",
    )
    @argument("--live", action="store_true", help="An explorer with sliders and greedy/sample/undo buttons.")
    @argument(
        "--lens",
        action="store_true",
        help="The logit lens: what each layer would predict (--show per layer).",
    )
    @argument("--code", action="store_true", help="With --lens: also show the plain transformers code.")
    @argument(
        "--no-interpolate", action="store_true", help="Keep {name} as written instead of substituting it."
    )
    @argument(
        "text",
        metavar="TEXT",
        nargs=argparse.REMAINDER,
        help="The text the model continues (quote it to keep leading or trailing spaces).",
    )
    @no_var_expand
    @line_cell_magic
    def llm_next(self, line: str = "", cell: str | None = None) -> None:
        """Show the model's probabilities for the next token after TEXT.

        The likeliest tokens are drawn as bars: their probability at temperature 1, beside the
        probability after --temperature, with the tokens that --top-k or --top-p would cut greyed
        out, and what sampling then gives each one. Below: the share of probability outside the
        bars, and the entropy. Tokens are drawn as %tokens draws them (· for a space, ↵ for a
        newline). --steps N chooses N tokens one at a time (the likeliest, or drawn with
        --sample), as a table with each token's probability, rank and runners-up.

        On a vLLM server only its likeliest tokens are known (at most its --max-logprobs, 20
        unless started with more): their probabilities are exact, the rest is one remainder, and
        what temperature, top-k and top-p give is computed within the listed tokens and marked ≈
        where that makes it approximate. There --steps N --sample lets the server draw each
        token with your temperature, top-k and top-p (step i with --seed S + i: the same seed,
        the same tokens), and --live shows the same partial view, its sample button drawn by the
        server too (the n-th draw with seed S + n).

        Examples::

            %llm_next The capital of France is
            %llm_next --temperature 0.5 --top-p 0.9 Once upon a time
            %llm_next --top-k 3 --show 15 "I like to eat "
            %llm_next --chat What is the capital of France?
            %llm_next --steps 8 The capital of France is
            %llm_next --steps 8 --sample --temperature 1.2 --seed 0 Once upon a time
            # sliders and buttons (needs ipywidgets)
            %llm_next --live Once upon a time
            # what each layer would say
            %llm_next --lens --show 3 The capital of France is

            %%llm_next --temperature 2
            A longer text, {variable} substituted from your namespace.

        Settings: `%config LlmMagics.next_show = 20`, `next_temperature`, `next_top_k`, `next_top_p`,
        `next_runners_up`. From Python: `llm_magics.next_token_distribution(text, name=None, ...)`.
        """
        # The text itself may hold a lone quote (an apostrophe, a path).
        args = parse(
            self.llm_next, line, unclosed_hint="close the quote, or put the text in a %%llm_next cell"
        )
        text = self.text_after_options(line, args, cell, "llm_next")
        sampling = Sampling(
            self.next_temperature if args.temperature is None else args.temperature,
            self.next_top_k if args.top_k is None else args.top_k,
            self.next_top_p if args.top_p is None else args.top_p,
        )
        sampling.validate()
        count = self.next_show if args.show is None else args.show
        if not 1 <= count <= MAX_SHOW:
            raise InvalidOption(f"--show must be between 1 and {MAX_SHOW}; got {count}.")
        if args.lens or args.code:
            from .inside import show_lens

            show_lens(self.registry.get(args.model), text, args, count)
            return None
        if args.steps is None and (args.sample or (args.seed is not None and not args.live)):
            raise InvalidOption("--sample and --seed go with --steps N (how many tokens to choose).")
        engine = require_engine(self.registry.get(args.model))

        if args.live:
            if args.steps is not None:
                raise InvalidOption("--live has its own buttons for steps; drop --steps.")
            session = next_token_session(engine, chat=args.chat, show=count, seed=args.seed)
            show(NextTokenExplorer(session, text=text, sampling=sampling))
            return None
        if args.steps is not None:
            result = next_token_steps(
                engine,
                text,
                steps=args.steps,
                sample=args.sample,
                seed=args.seed,
                temperature=sampling.temperature,
                top_k=sampling.top_k,
                top_p=sampling.top_p,
                chat=args.chat,
                runners_up=max(0, self.next_runners_up),
            )
            show(StepsView(result))
            return None
        distribution = next_token_distribution(
            engine,
            text,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            show=count,
            chat=args.chat,
        )
        show(NextTokenView(distribution))
        return None
