"""%llm_pipe and %%llm_pipe: the Pipeline API tasks as a magic, thin over `engines.pipeline`."""

from __future__ import annotations

from argparse import Namespace
from typing import Any

from IPython.core.magic import line_cell_magic
from IPython.core.magic_arguments import argument, magic_arguments

from ..display.notice import StatusLine
from ..display.pipe import CodeBlock, PipeResult
from ..engines.base import Engine
from ..engines.pipeline import PipelineEngine, TextGenerationEngine
from ..engines.transformers import TransformersEngine
from ..errors import HubUnreachable, InvalidOption, ModelLoadFailed
from ._base import parse, show
from .chat import ChatMagics, check_variable_name
from .models import ModelMagics

_GENERATING = ("text-generation", "summarization", "translation")
_AGGREGATIONS = ("none", "simple", "first", "average", "max")


class PipeMagics(ModelMagics, ChatMagics):
    """`%llm_pipe`: loading defaults come from the model traits (`default_quant` …), generation
    defaults from the chat traits (`max_new_tokens`, `temperature` …)."""

    @magic_arguments()
    @argument("task", help="sentiment-analysis, text-generation, zero-shot-classification, fill-mask, ner …")
    @argument("text", nargs="*", help="The input (line magic); in %%%%llm_pipe the cell is the input.")
    @argument(
        "--model", metavar="MODEL", help="Hub id, folder, .gguf or a loaded NAME (default: the task's)."
    )
    @argument("--as", dest="name", metavar="NAME", help="Registry name for the pipeline's model.")
    @argument("--lines", action="store_true", help="Each line of the cell is one input, run as a batch.")
    @argument(
        "--labels", metavar="A,B,C", help="zero-shot-classification: the candidate labels, comma-separated."
    )
    @argument("--multi-label", action="store_true", help="zero-shot-classification: labels are independent.")
    @argument(
        "--hypothesis-template",
        metavar="TEXT",
        help='zero-shot-classification, e.g. "This text is about {}."',
    )
    @argument("--context", metavar="TEXT", help="question-answering: the text that holds the answer.")
    @argument(
        "--top-k",
        type=int,
        metavar="K",
        help="How many labels or candidates (sampling top-k when generating).",
    )
    @argument(
        "--aggregation",
        metavar="HOW",
        help="token-classification: simple (default), first, average, max, none.",
    )
    @argument("--max-new-tokens", type=int, metavar="N", help="Generating tasks: most new tokens.")
    @argument("--temperature", type=float, metavar="T", help="Generating tasks: 0 (the default) is greedy.")
    @argument("--top-p", type=float, metavar="P", help="Generating tasks: nucleus sampling mass.")
    @argument("--repetition-penalty", type=float, metavar="R", help="Generating tasks: 1 means none.")
    @argument("--seed", type=int, metavar="S", help="Seed for sampling.")
    @argument("--quant", default=None, help="none, 4bit or 8bit, as for %%llm_load.")
    @argument("--dtype", default=None, help="auto, float32, bfloat16 or float16, as for %%llm_load.")
    @argument("--device-map", default=None, help="As for %%llm_load.")
    @argument("--revision", default=None, help="Hub branch, tag or commit.")
    @argument("--trust-remote-code", action="store_true", help="Run code from the model repository.")
    @argument("--force", action="store_true", help="Load even when the estimate says it will not fit.")
    @argument("--out", metavar="VAR", help="Also keep the raw output in VAR (it is always in _llm_pipe).")
    @argument("--code", action="store_true", help="Also show the plain transformers code for this cell.")
    @argument("--no-interpolate", action="store_true", help="Leave {name} references in the cell as written.")
    @line_cell_magic
    def llm_pipe(self, line: str, cell: str | None = None) -> None:
        """Run a Pipeline API task (`pipeline("sentiment-analysis")` …) and show its result.

        The model is loaded once (as %llm_load would: memory estimate, --quant, dtype, device),
        kept in the registry (%llm_list shows its task, %llm_unload frees it) and reused by the next
        cell with the same task and model. With no --model, the task's default model, as
        `pipeline(TASK)` picks it (it needs the hub once); text-generation with no --model uses the
        active chat model when there is one, without a second copy. The raw output (the list of
        dicts `pipeline` returns) is kept in `_llm_pipe`, and in VAR with --out. --code also shows
        the plain transformers code, above the result.

        Examples::

            %llm_pipe sentiment-analysis I love learning about LLMs!
            %llm_pipe text-generation --max-new-tokens 20 Once upon a time

            %%llm_pipe zero-shot-classification --labels "education, politics, sports" --lines
            I love learning about LLMs!
            The match ended in a draw.

            %llm_pipe fill-mask --model distilbert/distilroberta-base Paris is the <mask> of France.
            %llm_pipe ner --code Ada Lovelace worked with Charles Babbage in London.
        """
        from ..engines import pipeline as tasks

        args = parse(self.llm_pipe, line, intermixed=True)
        task = tasks.resolve_task(args.task)
        inputs = self._pipe_inputs(args, cell)
        options = self._pipe_options(task, args)
        if args.out is not None:
            check_variable_name(args.out, "--out")
        engine, plan, new, default = self._pipe_engine(task, args)
        if args.code:
            from ..code import pipeline_code

            show(
                CodeBlock(
                    pipeline_code(
                        args.task.strip().lower(),
                        plan,
                        inputs,
                        options,
                        default=default,
                        over_loaded_model=isinstance(engine, TransformersEngine)
                        and not isinstance(engine, tasks.TextGenerationEngine),
                        fallback=engine.describe().source if engine is not None else "MODEL",
                    )
                )
            )
        status = StatusLine(f"{task}")
        try:
            if engine is None:
                engine = self._load_pipe(task, plan, args, default, status)
            status.update(f"running on {len(inputs) if isinstance(inputs, list) else 1} input(s)")
            raw = self._run_pipe(engine, task, inputs, options)
        except BaseException:
            status.clear()
            raise
        # Registered only once it ran: a failed cell leaves the session as it was.
        if new:
            previous = self.registry.active_name
            self.registry.add(engine)
            # A pipeline does not take over %%llm_chat's active model.
            if previous is not None:
                self.registry.active_name = previous
        outputs = raw if isinstance(inputs, list) else [raw]
        texts = inputs if isinstance(inputs, list) else [inputs]
        status.replace_with(PipeResult(task, texts, outputs, engine.name, context=args.context))
        self.user_ns["_llm_pipe"] = raw
        if args.out:
            self.user_ns[args.out] = raw

    # -- steps -----------------------------------------------------------------------------------

    def _pipe_inputs(self, args: Namespace, cell: str | None) -> str | list[str]:
        if cell is not None:
            if args.text:
                raise InvalidOption("%%llm_pipe takes its input from the cell: leave it off the first line.")
            text = self.interpolate(cell, not args.no_interpolate)
            if args.lines:
                lines = [row.strip() for row in text.splitlines() if row.strip()]
                if not lines:
                    raise InvalidOption("The cell has no lines to run: write one input per line.")
                return lines
            text = text.strip()
        else:
            if args.lines:
                raise InvalidOption("--lines is for %%llm_pipe: write one input per line of the cell.")
            text = " ".join(args.text).strip()
        if not text:
            raise InvalidOption(
                f"No input: write the text after %llm_pipe {args.task} (or in the cell with %%llm_pipe)."
            )
        return text

    def _pipe_options(self, task: str, args: Namespace) -> dict[str, Any]:
        """The keyword arguments for the pipeline call; flags that do not apply are refused."""
        base = task.split("_")[0]
        only = {
            "labels": "zero-shot-classification",
            "multi_label": "zero-shot-classification",
            "hypothesis_template": "zero-shot-classification",
            "context": "question-answering",
            "aggregation": "token-classification",
        }
        for flag, owner in only.items():
            if getattr(args, flag) not in (None, False) and base != owner:
                raise InvalidOption(f"--{flag.replace('_', '-')} is for {owner}, not {task}.")
        generation = ("max_new_tokens", "temperature", "top_p", "repetition_penalty", "seed")
        if base not in _GENERATING:
            for flag in generation:
                if getattr(args, flag) is not None:
                    raise InvalidOption(f"--{flag.replace('_', '-')} is for generating tasks, not {task}.")
        options: dict[str, Any] = {}
        if base == "zero-shot-classification":
            labels = [label.strip() for label in (args.labels or "").split(",") if label.strip()]
            if not labels:
                raise InvalidOption(
                    'zero-shot-classification needs --labels, e.g. --labels "education, sports".'
                )
            options["candidate_labels"] = labels
            if args.multi_label:
                options["multi_label"] = True
            if args.hypothesis_template:
                if "{}" not in args.hypothesis_template:
                    raise InvalidOption("--hypothesis-template needs {} where the label goes.")
                options["hypothesis_template"] = args.hypothesis_template
        if base == "question-answering":
            if not (args.context or "").strip():
                raise InvalidOption('question-answering needs --context "the text that holds the answer".')
            options["context"] = args.context
        if base == "token-classification":
            aggregation = (args.aggregation or "simple").lower()
            if aggregation not in _AGGREGATIONS:
                raise InvalidOption(
                    f"--aggregation {aggregation!r}: choose one of {', '.join(_AGGREGATIONS)}."
                )
            options["aggregation_strategy"] = aggregation
        if base in _GENERATING:
            from ..engines.transformers.generation import generate_kwargs

            generation_options = self._generation_options(args)
            generation_options.validate()
            options.update(generate_kwargs(generation_options))
            if generation_options.seed is not None:
                options["seed"] = generation_options.seed
        elif args.top_k is not None:
            if args.top_k < 1:
                raise InvalidOption(f"--top-k must be 1 or more; got {args.top_k}.")
            options["top_k"] = args.top_k
        return options

    def _pipe_engine(self, task: str, args: Namespace) -> tuple[Engine | None, Any, bool, Any]:
        """(engine or None to load, its plan, whether it is new, the task default used or None)."""
        from .. import loading
        from ..engines import pipeline as tasks

        for name in (args.model, args.name):
            if name is not None and name in self.registry:
                engine = self.registry.get(name)
                self._check_fits(engine, task)
                return engine, _plan_of(engine), False, None
        default = None
        model = args.model
        revision = args.revision
        if model is None:
            active = self.registry.active_name
            current = self.registry.get(active) if active is not None else None
            if (
                task == "text-generation"
                and isinstance(current, TransformersEngine)
                and current.model is not None
            ):
                return current, current.plan, False, None
            default = tasks.default_model(task)
            model, revision = default[0], revision or default[1]
        source = loading.resolve_source(model)
        plan = self._plan(source, args, revision=revision)
        for engine in self.registry:
            known = _plan_of(engine)
            if (
                _task_of(engine) == task
                and known is not None
                and known.source == plan.source
                and (known.quantization, known.dtype) == (plan.quantization, plan.dtype)
            ):
                return engine, known, False, default
        if plan.name in self.registry:
            loaded = self.registry.get(plan.name).describe()
            raise InvalidOption(
                f"{plan.name!r} is already loaded from {loaded.source}; nothing changed. "
                f"Add --as NAME to load {plan.source.label} for {task} beside it."
            )
        return None, plan, True, default

    def _check_fits(self, engine: Engine, task: str) -> None:
        from ..engines import pipeline as tasks

        if _task_of(engine) == task:
            return
        if task == "text-generation" and isinstance(engine, TransformersEngine) and engine.model is not None:
            return
        what = _task_of(engine) or "a causal LM"
        raise ModelLoadFailed(
            f"{engine.name!r} is loaded for {what}; {task} needs {tasks.head_class(task).__name__}: "
            f"pass a model with that head (--model) or leave --model out for the task's default."
        )

    def _load_pipe(self, task: str, plan: Any, args: Namespace, default: Any, status: StatusLine) -> Engine:
        from .. import loading
        from ..engines import pipeline as tasks

        try:
            loaded = loading.load_weights(
                plan,
                auto_class=tasks.head_class(task),
                check_memory=self.check_memory and not args.force,
                progress=status.update,
            )
        except HubUnreachable as error:
            if default is None:
                raise
            typed = args.task.strip().lower()
            why = "HF_HUB_OFFLINE is set" if loading._hub_offline_mode() else "the hub cannot be reached"
            raise HubUnreachable(
                f"{typed} uses {default[0]} by default (as pipeline({typed!r}) does): it needs the hub "
                f"once to download it, and {why}. Run it where the hub is reachable, or pass --model FOLDER."
            ) from error
        info = tasks.task_details(task, loaded.info)
        engine: Any
        if task == "text-generation":
            engine = tasks.TextGenerationEngine(info, loaded.tokenizer, loaded.model)
        else:
            engine = tasks.PipelineEngine(info, task, loaded.model, loaded.tokenizer)
        engine.plan = plan
        return engine

    def _run_pipe(self, engine: Engine, task: str, inputs: str | list[str], options: dict[str, Any]) -> Any:
        from ..engines import pipeline as tasks

        if isinstance(engine, (tasks.PipelineEngine, tasks.TextGenerationEngine)):
            return engine.run(inputs, **options)
        assert isinstance(engine, TransformersEngine)
        # A chat model already loaded: a pipeline over the same objects, nothing copied.
        self._configure(engine)
        return tasks.run_pipeline(
            tasks.make_pipeline(task, engine.model, engine.tokenizer), inputs, dict(options)
        )


__all__ = ["PipeMagics"]


def _task_of(engine: Engine) -> str | None:
    """The pipeline task an engine runs, or None for engines that run none."""
    return engine.task if isinstance(engine, (PipelineEngine, TextGenerationEngine)) else None


def _plan_of(engine: Engine) -> Any:
    """The load plan of an in-process engine (what `--code` prints), or None for a remote one."""
    return engine.plan if isinstance(engine, (PipelineEngine, TransformersEngine)) else None
