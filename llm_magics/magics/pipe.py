"""%llm_pipe and %%llm_pipe: the Pipeline API tasks as a magic, thin over `engines.pipeline`."""

from __future__ import annotations

from argparse import Namespace
from typing import Any

from IPython.core.magic import line_cell_magic, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from .. import code, hub
from ..conversation import check_text
from ..display.notice import StatusLine
from ..display.pipe import CodeBlock, PipeResult
from ..engines import pipeline as tasks
from ..engines.base import Engine
from ..engines.pipeline import removed_tasks
from ..engines.pipeline.names import GENERATING, PipeTask, TaskName
from ..engines.transformers import TransformersEngine
from ..engines.transformers.config import load_config
from ..engines.transformers.generation import generate_kwargs
from ..engines.transformers.loading import load_weights
from ..engines.transformers.source import resolve_source
from ..errors import HubUnreachable, InvalidOption, ModelLoadFailed
from ._base import check_variable_name, loading_flags, parse, show
from .settings import SharedSettings, configure_engine, generation_options, plan_from_flags

_GENERATION_FLAGS = ("max_new_tokens", "temperature", "top_p", "repetition_penalty", "seed")
_AGGREGATIONS = ("none", "simple", "first", "average", "max")
#: Tasks whose pipeline takes no top_k (token-classification would raise a TypeError deep inside).
_NO_TOP_K = (TaskName.TOKEN_CLASSIFICATION, TaskName.ZERO_SHOT_CLASSIFICATION)


class PipeMagics(SharedSettings):
    """`%llm_pipe`: loading defaults come from the model traits (`default_quant` …), generation
    defaults from the chat traits (`max_new_tokens`, `temperature` …)."""

    @magic_arguments()
    @argument(
        "task",
        help="sentiment-analysis, text-generation, zero-shot-classification, fill-mask, ner, "
        "question-answering, summarization, translation_en_to_fr …",
    )
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
    @loading_flags
    @argument("--out", metavar="VAR", help="Also keep the raw output in VAR (it is always in _llm_pipe).")
    @argument("--code", action="store_true", help="Also show the plain transformers code for this cell.")
    @argument("--no-interpolate", action="store_true", help="Leave {name} references in the cell as written.")
    @no_var_expand
    @line_cell_magic
    def llm_pipe(self, line: str, cell: str | None = None) -> None:
        """Run a Pipeline API task (`pipeline("sentiment-analysis")` …) and show its result.

        The model is loaded once (as %llm_load would: memory estimate, --quant, dtype, device),
        kept in the registry (%llm_list shows its task, %llm_unload frees it) and reused by the next
        cell with the same task and model. With no --model, the task's default model, as
        `pipeline(TASK)` picks it (it needs the hub once); text-generation, summarization,
        translation and question-answering with no --model use the active chat model when there is
        one, without a second copy. transformers 5 removed the last three pipelines: they run here
        on seq2seq, extractive question-answering and chat models, with the old output. The raw
        output (the list of dicts `pipeline` returns) is kept in `_llm_pipe`, and in VAR with
        --out. --code also shows the plain transformers code, above the result. Put a question
        that ends in "?" in the cell: IPython reads a line ending in "?" as a request for help.

        Examples::

            %llm_pipe sentiment-analysis I love learning about LLMs!
            %llm_pipe text-generation --max-new-tokens 20 Once upon a time

            %%llm_pipe zero-shot-classification --labels "education, politics, sports" --lines
            I love learning about LLMs!
            The match ended in a draw.

            %llm_pipe fill-mask --model distilbert/distilroberta-base Paris is the <mask> of France.
            %llm_pipe ner --code Ada Lovelace worked with Charles Babbage in London.
            %llm_pipe translation_en_to_fr --model google-t5/t5-small I love learning about LLMs!

            %%llm_pipe question-answering --context "Ada Lovelace worked with Charles Babbage in London."
            Where did Ada Lovelace work?
        """
        args = parse(self.llm_pipe, line, intermixed=True)
        task = tasks.resolve_task(args.task)
        inputs = self._pipe_inputs(args, cell)
        options = self._pipe_options(task.name, args)
        if task.languages is not None:
            options.update(src_lang=task.languages[0], tgt_lang=task.languages[1])
        if args.out is not None:
            check_variable_name(args.out, "--out")
        engine, plan, new, default = self._pipe_engine(task, args)
        # A removed task's head depends on the model (seq2seq, extractive, chat): read its config
        # first, so a model that cannot do the task is refused before anything loads.
        config = self._removed_task_config(task, engine, plan, args, default)
        if config is not None:
            self._fit_to_runner(removed_tasks.runner_for(config), config, task, args, options)
        if args.code:
            show(CodeBlock(self._pipe_code(task, args, engine, plan, config, inputs, options, default)))
        status = StatusLine(f"{task}")
        try:
            if engine is None:
                engine = self._load_pipe(task.name, plan, args, default, status, config)
            tasks.check_against_model(engine, task, inputs, options)
            status.update(f"running on {len(inputs) if isinstance(inputs, list) else 1} input(s)")
            raw = self._run_pipe(engine, task.name, inputs, options)
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
                for number, row in enumerate(lines, 1):
                    check_text(row, f"Line {number}")
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
        check_text(text, "The input")
        return text

    def _pipe_options(self, task: TaskName, args: Namespace) -> dict[str, Any]:
        """The keyword arguments for the pipeline call; flags that do not apply are refused."""
        for owner in tasks.TASKS.values():
            for flag in owner.options:
                if getattr(args, flag) not in (None, False) and task is not owner.name:
                    raise InvalidOption(f"--{flag.replace('_', '-')} is for {owner.name}, not {task}.")
        needs = tasks.TASKS[task].needs
        if needs is not None and not (getattr(args, needs) or "").strip():
            raise InvalidOption(f"{task} needs --{needs}, e.g. {tasks.TASKS[task].example}.")
        # (a chat model answers questions by generating)
        if task not in GENERATING and task is not TaskName.QUESTION_ANSWERING:
            for flag in _GENERATION_FLAGS:
                if getattr(args, flag) is not None:
                    raise InvalidOption(f"--{flag.replace('_', '-')} is for generating tasks, not {task}.")
        options: dict[str, Any] = {}
        if task is TaskName.ZERO_SHOT_CLASSIFICATION:
            labels = [label.strip() for label in args.labels.split(",") if label.strip()]
            if not labels:
                raise InvalidOption(f"--labels {args.labels!r} names no label: {tasks.TASKS[task].example}.")
            options["candidate_labels"] = labels
            if args.multi_label:
                options["multi_label"] = True
            if args.hypothesis_template:
                if "{}" not in args.hypothesis_template:
                    raise InvalidOption("--hypothesis-template needs {} where the label goes.")
                options["hypothesis_template"] = args.hypothesis_template
        if task is TaskName.QUESTION_ANSWERING:
            options["context"] = args.context
        if task is TaskName.TOKEN_CLASSIFICATION:
            aggregation = (args.aggregation or "simple").lower()
            if aggregation not in _AGGREGATIONS:
                raise InvalidOption(
                    f"--aggregation {aggregation!r}: choose one of {', '.join(_AGGREGATIONS)}."
                )
            options["aggregation_strategy"] = aggregation
        if task in GENERATING:
            options.update(self._generate_options(args))
        elif args.top_k is not None:
            if task in _NO_TOP_K:
                raise InvalidOption(
                    f"--top-k is not an option of {task}: it gives one answer per word or label."
                )
            if args.top_k < 1:
                raise InvalidOption(f"--top-k must be 1 or more; got {args.top_k}.")
            options["top_k"] = args.top_k
        return options

    def _generate_options(self, args: Namespace) -> dict[str, Any]:
        """`generate()` keyword arguments from the flags and the chat traits, and the seed if any."""

        chosen = generation_options(self, args)
        chosen.validate()
        options = generate_kwargs(chosen)
        if chosen.seed is not None:
            options["seed"] = chosen.seed
        return options

    def _fit_to_runner(
        self,
        runner: removed_tasks.Runner,
        config: Any,
        task: PipeTask,
        args: Namespace,
        options: dict[str, Any],
    ) -> None:
        """A removed task's options for the model it runs on: a seq2seq model keeps its own
        max_length unless --max-new-tokens was given (as the pipeline did); question-answering on an
        extractive model takes --top-k, on a chat model it generates."""
        if runner is removed_tasks.Runner.SEQ2SEQ:
            _, settings = removed_tasks.seq2seq_settings(config, task.name, task.languages)
            if args.max_new_tokens is None and "max_length" in settings:
                options.pop("max_new_tokens", None)
        if task.name is not TaskName.QUESTION_ANSWERING:
            return
        if runner is removed_tasks.Runner.CHAT:
            if args.top_k is not None:
                raise InvalidOption(
                    "--top-k is for extractive question-answering models; a chat model gives one answer."
                )
            options.pop("top_k", None)
            options.update(self._generate_options(args))
            return
        for flag in _GENERATION_FLAGS:
            if getattr(args, flag) is not None:
                raise InvalidOption(
                    f"--{flag.replace('_', '-')} is for a chat model; an extractive model does not generate."
                )

    def _pipe_engine(self, task: PipeTask, args: Namespace) -> tuple[Engine | None, Any, bool, Any]:
        """(engine or None to load, its plan, whether it is new, the task default used or None)."""
        if args.name is not None and args.name in self.registry and args.name != args.model:
            engine = self._named_by_as(task.name, args)
            return engine, tasks.plan_of(engine), False, None
        if args.model is not None and args.model in self.registry:
            engine = self.registry.get(args.model)
            self._check_fits(engine, task.name)
            return engine, tasks.plan_of(engine), False, None
        default = None
        model = args.model
        revision = args.revision
        if model is None:
            active = self.registry.active_name
            current = self.registry.get(active) if active is not None else None
            if (
                tasks.runs_on_chat_models(task.name)
                and isinstance(current, TransformersEngine)
                and current.model is not None
            ):
                return current, current.plan, False, None
            default = tasks.default_model(task)
            model, revision = default[0], revision or default[1]
        source = resolve_source(model)
        plan = plan_from_flags(self, source, args, revision=revision)
        for engine in self.registry:
            known = tasks.plan_of(engine)
            if (
                tasks.can_run(engine, task.name)
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

    def _named_by_as(self, task: TaskName, args: Namespace) -> Engine:
        """`--as NAME` where NAME is loaded: that model again when it is the one --model names (or no
        --model is given) and it can do the task; otherwise the name is taken, and nothing runs."""

        engine = self.registry.get(args.name)
        known = tasks.plan_of(engine)
        same = args.model is None or (
            args.model not in self.registry
            and known is not None
            and resolve_source(args.model) == known.source
        )
        if same and tasks.can_run(engine, task):
            return engine
        raise InvalidOption(
            f"--as {args.name}: that name is taken by {engine.describe().source} "
            f"({tasks.task_of(engine) or 'a chat model'}); pick another NAME for this pipeline, or %llm_unload it first."
        )

    def _check_fits(self, engine: Engine, task: TaskName) -> None:
        if tasks.can_run(engine, task):
            return
        what = tasks.task_of(engine) or "a causal LM"
        needs = (
            "a seq2seq, question-answering or chat model"
            if tasks.is_removed(task)
            else tasks.head_class(task).__name__
        )
        raise ModelLoadFailed(
            f"{engine.name!r} is loaded for {what}; {task} needs {needs}: "
            f"pass a model with that head (--model) or leave --model out for the task's default."
        )

    def _hub_needed(self, error: HubUnreachable, args: Namespace, default: Any) -> HubUnreachable:
        """A default model the hub must give, said in one line: which model, and why it is needed."""
        typed = args.task.strip().lower()
        why = "HF_HUB_OFFLINE is set" if hub.offline_mode() else "the hub cannot be reached"
        if tasks.is_removed(tasks.resolve_task(typed).name):
            picked = f"as pipeline({typed!r}) did in transformers 4"
            instead = "or load a chat model first (%llm_load), or pass --model FOLDER"
        else:
            picked = f"as pipeline({typed!r}) does"
            instead = "or pass --model FOLDER"
        return HubUnreachable(
            f"{typed} uses {default[0]} by default ({picked}): it needs the hub once to download it, "
            f"and {why}. Run it where the hub is reachable, {instead}."
        )

    def _removed_task_config(
        self, task: PipeTask, engine: Engine | None, plan: Any, args: Namespace, default: Any
    ) -> Any:
        """The model config of a task `removed_tasks` runs (None for the others); a model that
        cannot do the task is one line here."""
        if not tasks.is_removed(task.name):
            return None
        if engine is not None:
            config = getattr(getattr(engine, "model", None), "config", None)
        else:
            try:
                config = load_config(plan.source, plan.revision, plan.trust_remote_code)
            except HubUnreachable as error:
                if default is None:
                    raise
                raise self._hub_needed(error, args, default) from error
        tasks.head_class(task.name, config)  # refuses a model that cannot do it
        return config

    def _pipe_code(
        self,
        task: PipeTask,
        args: Namespace,
        engine: Engine | None,
        plan: Any,
        config: Any,
        inputs: str | list[str],
        options: dict[str, Any],
        default: Any,
    ) -> str:
        fallback = engine.describe().source if engine is not None else "MODEL"
        if config is not None:
            return code.removed_task_code(
                task, removed_tasks.runner_for(config), plan, config, inputs, options, fallback=fallback
            )
        return code.pipeline_code(
            task,
            args.task.strip().lower(),
            plan,
            inputs,
            options,
            default=default,
            over_loaded_model=isinstance(engine, TransformersEngine)
            and not isinstance(engine, tasks.TextGenerationEngine),
            fallback=fallback,
        )

    def _load_pipe(
        self, task: TaskName, plan: Any, args: Namespace, default: Any, status: StatusLine, config: Any
    ) -> Engine:
        head = tasks.head_class(task, config)
        try:
            loaded = load_weights(
                plan,
                auto_class=head,
                check_memory=self.check_memory and not args.force,
                progress=status.update,
            )
        except HubUnreachable as error:
            if default is None:
                raise
            raise self._hub_needed(error, args, default) from error
        info = tasks.task_details(task, loaded.info)
        engine: Any
        if head.__name__ == "AutoModelForCausalLM":
            engine = tasks.TextGenerationEngine(info, loaded.tokenizer, loaded.model, task=task)
        else:
            engine = tasks.PipelineEngine(info, task, loaded.model, loaded.tokenizer)
        engine.plan = plan
        return engine

    def _run_pipe(
        self, engine: Engine, task: TaskName, inputs: str | list[str], options: dict[str, Any]
    ) -> Any:
        if isinstance(engine, (tasks.PipelineEngine, tasks.TextGenerationEngine)) and engine.task is task:
            return engine.run(inputs, **options)
        # A model already loaded for something else that can also do this (a chat model; a seq2seq
        # model loaded for summarization, now translating): a pipeline over the same objects.
        assert isinstance(engine, (tasks.PipelineEngine, TransformersEngine))
        if isinstance(engine, TransformersEngine):
            configure_engine(self, engine)
        return tasks.run_pipeline(
            tasks.make_pipeline(task, engine.model, engine.tokenizer), inputs, dict(options)
        )


__all__ = ["PipeMagics"]
