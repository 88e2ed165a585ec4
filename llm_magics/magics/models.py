"""%llm_load, %llm_list, %llm_use, %llm_unload: the session's models."""

from __future__ import annotations

import weakref
from argparse import Namespace
from typing import Any

from IPython.core.magic import line_magic, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Float, observe

from ..code import load_code, remote_load_code
from ..display.cards import EstimateTable, ModelCard, RegistryTable, format_bytes
from ..display.notice import Notice, NoticeKind, StatusLine
from ..display.pipe import OPENAI_CLIENT, CodeBlock
from ..engines import remote
from ..engines.base import HoldsModel
from ..engines.transformers.loading import load_model
from ..engines.transformers.memory import estimate_memory
from ..engines.transformers.plan import TRUST_REMOTE_CODE_NOTICE
from ..engines.transformers.source import resolve_source
from ..errors import InvalidOption
from ..registry import check_name, find_holders, is_name, memory_in_use
from ..values import EngineInfo
from ._base import loading_flags, parse, show
from .settings import SharedSettings, plan_from_flags


class ModelMagics(SharedSettings):
    remote_connect_timeout = Float(
        5.0,
        min=0.1,
        help="Seconds to wait for a server given with %llm_load --endpoint to accept a connection.",
    ).tag(config=True)
    remote_read_timeout = Float(
        60.0,
        min=0.1,
        help="Seconds to wait for each part of a server's answer (the gap between two streamed tokens).",
    ).tag(config=True)

    @observe("remote_connect_timeout", "remote_read_timeout")
    def _remote_timeouts_changed(self, change: Any) -> None:
        """A changed timeout reaches the servers already connected, not only the next %llm_load."""

        timeouts = remote.Timeouts(self.remote_connect_timeout, self.remote_read_timeout)
        for engine in self.registry:
            if isinstance(engine, remote.RemoteEngine):
                engine.set_timeouts(timeouts)

    @magic_arguments()
    @argument(
        "model",
        nargs="?",
        default=None,
        help="Hub id, local folder, .gguf file or alias (default: smollm2-135m).",
    )
    @loading_flags
    @argument(
        "--as", dest="name", default=None, help="Registry name (default: alias, or last part of id/folder)."
    )
    @argument("--estimate", action="store_true", help="Show the memory table for each mode; load nothing.")
    @argument("--reload", action="store_true", help="Load again even if NAME is already loaded.")
    @argument("--tokenizer-only", action="store_true", help="Load only the tokenizer (enough for %%tokens).")
    @argument(
        "--endpoint",
        metavar="URL",
        default=None,
        help="Use MODEL on an OpenAI-compatible server (vLLM, llama.cpp, transformers serve) instead of loading it.",
    )
    @argument(
        "--api-key-env",
        metavar="VAR",
        default=None,
        help="Environment variable holding the server's API key (default: OPENAI_API_KEY when set).",
    )
    @argument(
        "--tokenizer",
        metavar="ID_OR_FOLDER",
        default=None,
        help="With --endpoint: a local tokenizer for %%tokens, for servers without /tokenize.",
    )
    @argument("--code", action="store_true", help="Also show the plain transformers code for this load.")
    @no_var_expand
    @line_magic
    def llm_load(self, line: str = "") -> None:
        """Load an open causal LM into this session and make it the active model.

        Examples::

            # the bundled SmolLM2-135M-Instruct
            %llm_load
            %llm_load HuggingFaceTB/SmolLM2-360M-Instruct --quant 4bit
            %llm_load ./my-model --dtype bfloat16 --as mine
            # memory table, no weights
            %llm_load meta-llama/Llama-3.2-1B --estimate
            %llm_load gpt2 --tokenizer-only
            %llm_load Qwen/Qwen2.5-1.5B-Instruct --endpoint http://10.0.0.5:8000/v1 --api-key-env CLASS_KEY

        With --endpoint nothing is loaded here: MODEL runs on that server (MODEL may be left out when
        it serves one model), and %%llm_chat, %%llm_complete and %tokens use it as a local one.

        The first load of the bundled model converts its GGUF once into a cache folder
        ($LLM_MAGICS_CACHE_DIR, else ~/.cache/llm_magics); later loads take about a second.
        """

        args = parse(self.llm_load, line)
        if args.endpoint is not None:
            self._load_remote(args)
            return
        if args.api_key_env is not None or args.tokenizer is not None:
            raise InvalidOption("--api-key-env and --tokenizer go with --endpoint URL.")
        source = resolve_source(args.model, tokenizer_only=args.tokenizer_only)
        plan = plan_from_flags(self, source, args, revision=args.revision, tokenizer_only=args.tokenizer_only)
        if args.code:
            show(CodeBlock(load_code(plan)))
        if args.estimate:
            if args.tokenizer_only:
                raise InvalidOption(
                    "--estimate is about weights; it has nothing to say with --tokenizer-only."
                )
            show(EstimateTable(estimate_memory(plan)))
            return
        if plan.name in self.registry and not args.reload:
            loaded = self.registry.get(plan.name).describe()
            if loaded.source != plan.source.label:
                raise InvalidOption(
                    f"{plan.name!r} is already loaded from {loaded.source}; nothing changed. Add "
                    f"--as NAME to load {plan.source.label} beside it, or --reload to replace it."
                )
            show(
                Notice(
                    f"{plan.name} is already loaded ({_describe(loaded)}); nothing changed. "
                    f"Add --reload to load it again, or --as NAME to keep a second copy.",
                    NoticeKind.WARNING,
                )
            )
            return
        if plan.trust_remote_code:
            show(Notice(TRUST_REMOTE_CODE_NOTICE, NoticeKind.WARNING))
        status = StatusLine(f"Loading {plan.name}")
        try:
            engine = load_model(
                plan, check_memory=self.check_memory and not args.force, progress=status.update
            )
        except BaseException:
            status.clear()
            raise
        # The new engine replaces an old one of the same name only once it loaded: a failed
        # --reload leaves the session as it was.
        if plan.name in self.registry:
            self.registry.unload(plan.name)
        self.registry.add(engine)
        status.replace_with(ModelCard(engine.describe()))

    def _load_remote(self, args: Namespace) -> None:
        """%llm_load --endpoint: connect (all the logic is in `engines.remote`), register, show the card."""

        local_only = (
            "quant",
            "dtype",
            "device_map",
            "revision",
            "trust_remote_code",
            "estimate",
            "tokenizer_only",
        )
        given = [f"--{flag.replace('_', '-')}" for flag in local_only if getattr(args, flag)]
        if given:
            raise InvalidOption(
                f"{', '.join(given)} is about loading weights here; it has no meaning with --endpoint."
            )
        name = args.name
        if name is not None:
            check_name(name)
        if name is not None and name in self.registry and not args.reload:
            show(
                Notice(
                    f"{name} is already loaded; nothing changed. Add --reload to connect again.",
                    NoticeKind.WARNING,
                )
            )
            return
        engine = remote.connect(
            args.endpoint,
            args.model,
            api_key_env=args.api_key_env,
            tokenizer=args.tokenizer,
            name=name,
            timeouts=remote.Timeouts(self.remote_connect_timeout, self.remote_read_timeout),
        )
        if not is_name(engine.name):
            engine.close()
            raise InvalidOption(
                f"The served id {engine.model!r} makes no registry name that %llm_use could take: "
                "add --as NAME (letters, digits, '.', '_' and '-')."
            )
        if args.code:
            code = remote_load_code(engine.endpoint.api, engine.model, engine.key_variable)
            show(CodeBlock(code, OPENAI_CLIENT))
        if engine.name in self.registry and not args.reload:
            engine.close()
            show(
                Notice(
                    f"{engine.name} is already loaded; nothing changed. Add --as NAME or --reload.",
                    NoticeKind.WARNING,
                )
            )
            return
        for warning in engine.warnings:
            show(Notice(warning, NoticeKind.WARNING))
        # Replaced only once connected: a failed --reload leaves the session as it was.
        if engine.name in self.registry:
            self.registry.unload(engine.name)
        self.registry.add(engine)
        show(ModelCard(engine.describe()))

    @no_var_expand
    @line_magic
    def llm_list(self, line: str = "") -> None:
        """Show the loaded models: name, source, quantization, dtype, device, footprint; * marks the active one."""
        if line.strip():
            raise InvalidOption("%llm_list takes no arguments.")
        show(RegistryTable([engine.describe() for engine in self.registry], self.registry.active_name))

    @magic_arguments()
    @argument("name", help="A loaded model's name (see %%llm_list).")
    @no_var_expand
    @line_magic
    def llm_use(self, line: str = "") -> None:
        """Make a loaded model the active one, used when a magic gets no NAME.

        Example::

            %llm_use smollm2-135m
        """
        args = parse(self.llm_use, line)
        engine = self.registry.use(args.name)
        show(Notice(f"{engine.name} is now the active model.", NoticeKind.SUCCESS))

    @magic_arguments()
    @argument("name", nargs="?", default=None, help="The model to unload (default: the active one).")
    @argument("--all", action="store_true", help="Unload every model.")
    @no_var_expand
    @line_magic
    def llm_unload(self, line: str = "") -> None:
        """Free a model's memory (its conversation and cache go with it).

        Examples::

            %llm_unload smollm2-135m
            %llm_unload --all
        """
        args = parse(self.llm_unload, line)
        if args.all and args.name:
            raise InvalidOption("Give a NAME or --all, not both.")
        if args.all and len(self.registry) == 0:
            show(Notice("Nothing to unload: no models are loaded."))
            return
        names = self.registry.names() if args.all else [self.registry.get(args.name).name]
        models = [engine.model for engine in map(self.registry.get, names) if isinstance(engine, HoldsModel)]
        watched = [weakref.ref(model) for model in models if model is not None]
        del models
        before = memory_in_use()
        report = self.registry.unload(args.name, everything=args.all)
        measured = max(0, before - memory_in_use())
        alive = [model for model in (ref() for ref in watched) if model is not None]
        holders = find_holders(self.user_ns, alive)
        del alive
        unloaded = ", ".join(report.names)
        active = self.registry.active_name
        after = f" Active model: {active}." if active else " No models are loaded now."
        if holders:
            show(Notice(_still_held(unloaded, holders, report.freed_bytes) + after, NoticeKind.WARNING))
            return
        show(
            Notice(
                f"Unloaded {unloaded}: {format_bytes(measured)} of memory came back "
                f"({'their' if len(report.names) > 1 else 'its'} footprint: "
                f"{format_bytes(report.freed_bytes)}).{after}",
                NoticeKind.SUCCESS,
            )
        )


def _still_held(unloaded: str, holders: list[str], footprint: int) -> str:
    outputs = [
        name
        for name in holders
        if name.startswith("Out[") or name.strip("_").isdigit() or not name.strip("_")
    ]
    variables = [name for name in holders if name not in outputs]
    steps = ([f"del {', '.join(variables)}"] if variables else []) + (["%reset -f out"] if outputs else [])
    return (
        f"Unloaded {unloaded} from the session, but {_and(holders)} still "
        f"{'refers' if len(holders) == 1 else 'refer'} to its model, so about "
        f"{format_bytes(footprint)} stay in memory; run {' and '.join(steps)} to free it."
    )


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _describe(info: EngineInfo) -> str:
    if info.tokenizer_only:
        return "tokenizer only"
    quant = "no quantization" if info.quantization == "none" else info.quantization
    return f"{info.dtype}, {quant}"
