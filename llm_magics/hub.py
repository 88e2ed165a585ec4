"""Models from the Hugging Face hub: whether it can be asked, what a repository holds, the download
with its status line, and the hub's refusals as our one-line errors.

A reachable hub is asked for the repository's file list first, so that a repository without
weights, or a download the disk cannot take, is refused before a byte of weights arrives. The
files `from_pretrained` needs are then fetched here, one at a time and from one commit, through
the hub client's own `hf_hub_download` (its cache, resume and retries), so that the status line
can say which file, how much of the whole and how fast; `from_pretrained` then reads the local
snapshot. Tokens are the client's business (`HF_TOKEN`, `huggingface_hub.login()`, Colab's
secret): nothing here reads or shows one.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import importlib
import inspect
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .errors import (
    DiskFull,
    DownloadFailed,
    GatedModel,
    HubTokenInvalid,
    HubUnreachable,
    LlmMagicsError,
    ModelNotFound,
    NoWeights,
    RevisionNotFound,
)

#: Called with a stage, the fraction of it done (or None) and a detail that changes within the
#: stage (MB done, rate) without making it a new one.
Progress = Callable[..., None]

# What `from_pretrained` reads from a repository's top level, beside the weights: configs, the
# tokenizer (tokenizer.json, SentencePiece's .model, BPE's vocab and merges, tiktoken files) and
# chat templates. Sub-folders (`original/` with Meta's own checkpoint, `onnx/`) are left alone.
_SUPPORT_PATTERNS = ("*.json", "*.jinja", "*.model", "*.txt", "*.tiktoken", "tokenizer*")
_SAFETENSORS_PATTERNS = ("model*.safetensors", "model.safetensors.index.json")
_PICKLE_PATTERNS = ("pytorch_model*.bin", "pytorch_model.bin.index.json")
_CODE_PATTERNS = ("*.py",)


# --------------------------------------------------------------------------- can the hub be asked


def offline_mode() -> bool:
    """Whether `HF_HUB_OFFLINE` is set, as the hub client itself read it (once, at its import)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _hub_host() -> tuple[str, int]:
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    return endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)


#: How long a failed reachability check stands. One load asks about its config and then its
#: weights, and each new check of a hub that does not answer waits out the whole timeout again.
UNREACHABLE_FOR_S = 30.0
_unreachable_since: dict[tuple[str, int], float] = {}


def _hub_is_reachable(timeout: float = 3.0) -> bool:
    address = _hub_host()
    failed = _unreachable_since.get(address)
    if failed is not None and time.monotonic() - failed < UNREACHABLE_FOR_S:
        return False
    try:
        with socket.create_connection(address, timeout=timeout):
            _unreachable_since.pop(address, None)
            return True
    except OSError:
        _unreachable_since[address] = time.monotonic()
        return False


def _is_in_hub_cache(hub_id: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub_id, "config.json", revision=revision)
    return isinstance(found, str)


def hub_access(hub_id: str, revision: str | None, aliases: str) -> dict[str, Any]:
    """from_pretrained kwargs for a hub model, failing in seconds when it cannot be fetched.

    A reachable hub is always asked (its client reuses what the cache holds and fetches the rest:
    a cached config.json alone must not stop the tokenizer and weights from downloading). Offline,
    or with the hub out of reach, a model in the local cache loads from it; otherwise one line says
    so before transformers' retries can take minutes. `aliases` names the bundled models.
    """
    offline = offline_mode()
    if not offline and _hub_is_reachable():
        return {}
    if _is_in_hub_cache(hub_id, revision):
        return {"local_files_only": True}
    if offline:
        raise HubUnreachable(
            f"{hub_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: "
            f"download it where you have a network, pass a local folder or .gguf file, or use an alias ({aliases})."
        )
    host, _ = _hub_host()
    raise HubUnreachable(
        f"{hub_id} is not cached locally and {host} cannot be reached: "
        f"check the network, or pass a local folder or .gguf file."
    )


# --------------------------------------------------------------------------- what a repository holds


@dataclass(frozen=True)
class RepoFile:
    path: str
    size: int


@dataclass(frozen=True)
class Snapshot:
    """The files a load needs from one commit of a repository."""

    hub_id: str
    commit: str
    files: tuple[RepoFile, ...]
    pickles: bool  # the weights are pytorch_model.bin (the safety path then reads them)

    @property
    def total_bytes(self) -> int:
        return sum(file.size for file in self.files)


def _matching(files: list[RepoFile], patterns: tuple[str, ...]) -> list[RepoFile]:
    return [f for f in files if "/" not in f.path and any(fnmatch.fnmatch(f.path, p) for p in patterns)]


def plan_snapshot(
    hub_id: str, revision: str | None, *, weights: bool, trust_remote_code: bool = False
) -> Snapshot:
    """The commit and the files to fetch, from the hub's file list (one request, no file fetched).

    Safetensors weights are preferred, as `from_pretrained` prefers them; pickle weights only when
    there are none. A repository with neither is refused here, before any download.
    """
    from huggingface_hub import HfApi

    info = HfApi().model_info(hub_id, revision=revision, files_metadata=True)
    files = [RepoFile(s.rfilename, int(s.size or 0)) for s in info.siblings or []]
    wanted = _matching(files, _SUPPORT_PATTERNS + (_CODE_PATTERNS if trust_remote_code else ()))
    pickles = False
    if weights:
        safetensors = _matching(files, _SAFETENSORS_PATTERNS)
        pickled = _matching(files, _PICKLE_PATTERNS)
        if not safetensors and not pickled:
            raise NoWeights(_no_weights_line(hub_id, files))
        pickles = not safetensors
        wanted += safetensors or pickled
    unique = {file.path: file for file in wanted}
    return Snapshot(hub_id, str(info.sha), tuple(unique.values()), pickles)


def _no_weights_line(hub_id: str, files: list[RepoFile]) -> str:
    if any(f.path.endswith(".gguf") for f in files):
        return (
            f"{hub_id} holds only .gguf files, no transformers weights: download one with "
            "huggingface_hub.hf_hub_download and pass its path to %llm_load."
        )
    return (
        f"{hub_id} has no weights transformers can load (no model.safetensors or pytorch_model.bin "
        "at its top level): it may be a tokenizer, an adapter or another library's model."
    )


# --------------------------------------------------------------------------- the download


def megabytes(count: float) -> str:
    if count >= 10_000_000_000:
        return f"{count / 1e9:,.0f} GB"
    if count >= 1_000_000_000:
        return f"{count / 1e9:,.1f} GB"
    return f"{count / 1e6:,.1f} MB"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"
    if seconds >= 60:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    return f"{seconds:.0f} s"


class DownloadMeter:
    """Counts what arrives over all files of a snapshot and reports it as one status line."""

    def __init__(self, snapshot: Snapshot, progress: Progress) -> None:
        self.snapshot = snapshot
        self.progress = progress
        self.done = 0  # bytes of the snapshot in the cache, counting earlier (resumed) parts
        self.fetched = 0  # bytes this load received
        self.started = time.monotonic()
        self.stage = "downloading"

    def begin(self, file: RepoFile, index: int, already: int = 0) -> None:
        count = len(self.snapshot.files)
        self.stage = f"downloading {file.path} ({index} of {count} files)"
        self.done += already
        self.report()

    def add(self, count: int) -> None:
        self.done += count
        self.fetched += count
        self.report()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def report(self) -> None:
        total = self.snapshot.total_bytes
        detail = f"{megabytes(self.done)} of {megabytes(total)}"
        elapsed = self.seconds
        if self.fetched and elapsed > 0.5:
            rate = self.fetched / elapsed
            left = max(total - self.done, 0) / rate
            detail += f" · {megabytes(rate)}/s · {_duration(left)} left"
        self.progress(self.stage, self.done / total if total else None, detail=detail)


class BarStandIn:
    """What a tqdm bar must answer besides `update`, as no-ops: a context manager, and close,
    refresh, set_description, ... Base of the stand-ins that report to a status line instead."""

    def __enter__(self) -> BarStandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def _bar_class(meter: DownloadMeter) -> type:
    """A tqdm stand-in for `hf_hub_download(tqdm_class=...)`: the client's bytes reach the meter,
    and the client draws no bar of its own (in Colab its widget bars would duplicate ours)."""

    class MeterBar(BarStandIn):
        def __init__(self, *args: Any, initial: int = 0, **kwargs: Any) -> None:
            meter.done += initial  # a file the client resumes: the part already on disk

        def update(self, count: float | None = 1) -> None:
            meter.add(int(count or 0))

    return MeterBar


@contextlib.contextmanager
def quiet_bars() -> Iterator[None]:
    """The hub client's own bars off (restored after): the status line reports instead, and in
    Colab the client's widget bars would be a second, duplicated display. Needed beside
    `tqdm_class` for files transformers fetches itself (config.json) and for clients whose
    `hf_hub_download` takes no `tqdm_class` (huggingface_hub 1.0)."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    were_off = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not were_off:
            enable_progress_bars()


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP library's connection failures (httpx for huggingface_hub 1.x, httpx2 later)."""
    found: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


@dataclass(frozen=True)
class Downloaded:
    folder: Path  # the snapshot in the cache, which from_pretrained reads
    fetched_bytes: int
    seconds: float


def download(snapshot: Snapshot, progress: Progress) -> Downloaded:
    """Fetch the snapshot's files into the hub cache. Files already there are reused; a file cut
    off earlier starts over (huggingface_hub 1.x deletes partial files)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = {
        file.path
        for file in snapshot.files
        if isinstance(try_to_load_from_cache(snapshot.hub_id, file.path, revision=snapshot.commit), str)
    }
    _check_room(snapshot, sum(file.size for file in snapshot.files if file.path not in cached))
    meter = DownloadMeter(snapshot, progress)
    takes_bar = "tqdm_class" in inspect.signature(hf_hub_download).parameters
    extra: dict[str, Any] = {"tqdm_class": _bar_class(meter)} if takes_bar else {}
    folder: Path | None = None
    with quiet_bars(), _download_errors(snapshot, meter):
        for index, file in enumerate(snapshot.files, 1):
            meter.begin(file, index, already=file.size if file.path in cached else 0)
            path = hf_hub_download(snapshot.hub_id, file.path, revision=snapshot.commit, **extra)
            if not takes_bar and file.path not in cached:
                meter.add(file.size)
            folder = Path(path).parent
    assert folder is not None  # every snapshot holds at least config.json
    return Downloaded(folder, meter.fetched, meter.seconds)


def _cache_folder() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _check_room(snapshot: Snapshot, missing: int) -> None:
    """Refuse a download the disk cannot take, before it starts (a full disk mid-way is worse)."""
    cache = _cache_folder()
    existing = next((p for p in (cache, *cache.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    if missing > free:
        raise DiskFull(_disk_full_line(snapshot, missing, free))


def _disk_full_line(snapshot: Snapshot, needed: int, free: int | None) -> str:
    room = f", {megabytes(free)} free" if free is not None else ""
    return (
        f"{snapshot.hub_id} needs {megabytes(needed)} in the Hugging Face cache at {_cache_folder()}{room}: "
        "free space there, or set HF_HOME to a larger disk before importing anything (restart the kernel)."
    )


@contextlib.contextmanager
def _download_errors(snapshot: Snapshot, meter: DownloadMeter) -> Iterator[None]:
    """A full disk and a broken connection as one line each, by type; the hub's refusals pass on."""
    try:
        yield
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise DiskFull(_disk_full_line(snapshot, snapshot.total_bytes - meter.done, None)) from error
    except _transport_errors() as error:
        raise DownloadFailed(
            f"The download of {snapshot.hub_id} broke off at {megabytes(meter.done)} of "
            f"{megabytes(snapshot.total_bytes)} ({type(error).__name__}): run the cell again to go on; "
            "the files that finished stay in the cache (the one cut off starts over)."
        ) from error


# --------------------------------------------------------------------------- the hub's refusals


def _model_page(hub_id: str) -> str:
    from huggingface_hub import constants

    return f"{constants.ENDPOINT.rstrip('/')}/{hub_id}"


def _has_token() -> bool:
    from huggingface_hub import get_token

    return get_token() is not None


def hub_refusal(error: BaseException, hub_id: str, revision: str | None) -> LlmMagicsError | None:
    """Our one-line error for the hub's refusal behind `error` (transformers re-raises the hub's
    errors as an OSError from them), or None when the hub did not refuse. By type, most specific
    first: `GatedRepoError` is a `RepositoryNotFoundError`, yet not a spelling mistake."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    hub_error = error if isinstance(error, HfHubHTTPError) else error.__cause__
    if isinstance(hub_error, GatedRepoError):
        page = _model_page(hub_id)
        if _has_token():
            return GatedModel(
                f"{hub_id} is gated and your Hugging Face token has no access to it yet: accept its licence "
                f"at {page} (signed in as the token's account; some authors approve by hand), then run the cell again."
            )
        return GatedModel(
            f"{hub_id} is gated: accept its licence at {page}, then give a token (in Colab, the secret "
            "HF_TOKEN with notebook access; elsewhere huggingface_hub.login() or the HF_TOKEN variable) "
            "and run the cell again."
        )
    if isinstance(hub_error, RevisionNotFoundError):
        return RevisionNotFound(
            f"{hub_id} has no revision {revision!r}: name a branch, tag or commit listed under "
            f"'Files and versions' at {_model_page(hub_id)}."
        )
    if isinstance(hub_error, RepositoryNotFoundError):
        return ModelNotFound(f"{hub_id} is not a model on the hub (check the spelling).")
    response = getattr(hub_error, "response", None)
    if isinstance(hub_error, HfHubHTTPError) and getattr(response, "status_code", None) == 401:
        return HubTokenInvalid(
            "The hub refused your Hugging Face token as invalid (401): make a new one at "
            f"{_model_page('settings/tokens')}, then update the HF_TOKEN secret or variable, or run "
            "huggingface_hub.login() again."
        )
    return None
