"""Expected failures, each shown to the user as one actionable line.

    LlmMagicsError
    ├── TransformersUnsupported  transformers is missing or older than the oldest version we support
    ├── ModelNotFound            the MODEL argument names nothing we can load
    ├── HubUnreachable           a hub id that is not cached locally, while offline
    ├── GatedModel               a gated hub model: no token, or a token without access yet
    ├── HubTokenInvalid          the hub refused the Hugging Face token itself (401)
    ├── RevisionNotFound         `--revision` names no branch, tag or commit of the model
    ├── NoWeights                a hub repository with no weights transformers can load as the model
    ├── DownloadFailed           the connection to the hub broke mid-download (finished files are kept)
    ├── DiskFull                 no room in the cache for the download (ENOSPC, or too little free)
    ├── NotLoaded                a registry name (or the active model) that is not loaded
    ├── InvalidOption            an option value out of range or meaningless here
    ├── QuantizationUnavailable  bitsandbytes missing, or it cannot serve this machine
    ├── InsufficientMemory       the estimate says the load will not fit
    ├── ModelLoadFailed          transformers refused the files (corrupt, unsupported architecture)
    │   └── UnsafeWeights        pickle weights that would run code, blocked by torch's weights_only
    ├── ChatTemplateFailed       the model's chat template fails or is blocked by the sandbox
    ├── GenerationFailed         generation ran out of memory (a model bug keeps its traceback)
    ├── GenerationInterrupted    the stop button ended a reply early (the partial reply is kept)
    ├── ConversationFileInvalid  `%llm_history --load` of a file that is not a conversation
    │   └── ConversationTooLarge a file past the limits (size, message count) `--load` reads
    ├── ConversationNotSaved     `--save` could not write (no such folder, a folder, no permission)
    ├── WouldOverwrite           `--save` onto a file this extension did not write (without --force)
    ├── NotSupported             the engine cannot do what a magic needs (%llm_next without probabilities)
    ├── NoAlternatives           `%llm_history --alternatives` with no scored last reply to show
    └── RemoteError              an OpenAI-compatible server (`%llm_load --endpoint`) failed us
        ├── RemoteExtraMissing   the `openai` package (extra `[remote]`) is not installed
        ├── ServerUnreachable    connection refused, a host name that does not resolve
        ├── ServerTimeout        no answer within the connect or read timeout
        ├── AuthenticationFailed 401/403: the API key is missing, wrong or not allowed
        ├── ModelNotServed       the server does not serve MODEL (the message lists what it does)
        ├── ContextTooLong       the server says the prompt and reply do not fit its context
        ├── ServerRejected       any other refusal (4xx/5xx, an error sent mid-stream)
        │   ├── LogprobsRefused  more log-probabilities asked for than the server gives (vLLM's --max-logprobs)
        │   └── SamplingRefused  the server will not draw the next token as asked (--sample, --live's sample)
        ├── ServerDisconnected   the connection dropped before a reply arrived
        └── NotOpenAICompatible  the answer is not JSON, or not shaped like OpenAI's API

Unexpected bugs are not wrapped: they keep their full traceback.
"""

from __future__ import annotations


def first_line(error: BaseException, limit: int) -> str:
    """The first line of an exception's message, cut to `limit` characters ("" when it has none)."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


class LlmMagicsError(Exception):
    """Base class: an expected failure with a one-line, actionable message."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows exactly these lines instead of a traceback wall.
        return [f"{type(self).__name__}: {self}"]


class TransformersUnsupported(LlmMagicsError):
    """Raised at `%llm_load` when transformers is missing or older than `engines.transformers.versions.MIN_TRANSFORMERS`.

    transformers 4.x loads models through other names (torch_dtype, another GGUF path); rather than
    fail somewhere deep inside it, the load stops first and says what to install.
    """


class ModelNotFound(LlmMagicsError):
    """Raised when MODEL is neither a loadable path, a built-in alias, nor a hub id."""


class HubUnreachable(LlmMagicsError):
    """Raised when a hub id is not in the local cache and the hub cannot be reached."""


class GatedModel(LlmMagicsError):
    """Raised when the hub answers that a model is gated (Llama): its licence must be accepted on the
    model page, and a token given, before it downloads. The message never holds the token."""


class HubTokenInvalid(LlmMagicsError):
    """Raised when the hub refuses the Hugging Face token itself (401, invalid credentials)."""


class RevisionNotFound(LlmMagicsError):
    """Raised when `--revision` names no branch, tag or commit of a hub model."""


class NoWeights(ModelNotFound):
    """Raised when a hub repository holds no safetensors or pytorch_model.bin weights (GGUF only,
    ONNX only, a dataset-like repository), before anything but its file list is fetched."""


class DownloadFailed(LlmMagicsError):
    """Raised when the connection breaks mid-download after the hub client's own retries. The files
    that finished stay in the cache, so running the cell again goes on from them; the client
    (huggingface_hub 1.x) deletes a partial file, so the one cut off starts over."""


class DiskFull(LlmMagicsError):
    """Raised when the cache's disk cannot take the download: checked before it starts, and
    `ENOSPC` while it runs. The message says how much is needed and where the cache is."""


class NotLoaded(LlmMagicsError):
    """Raised when a name is not in the session's registry, or nothing is loaded yet."""


class InvalidOption(LlmMagicsError):
    """Raised for option values that parse but make no sense (negative counts, unknown modes)."""


class QuantizationUnavailable(LlmMagicsError):
    """Raised when --quant is asked for and bitsandbytes is missing or cannot run here."""


class InsufficientMemory(LlmMagicsError):
    """Raised before loading when the memory estimate exceeds what is free (unless --force)."""


class ModelLoadFailed(LlmMagicsError):
    """Raised when the files exist but transformers cannot build a model from them."""


class GenerationFailed(LlmMagicsError):
    """Raised when generation runs out of memory; nothing is added to the conversation."""


class GenerationInterrupted(LlmMagicsError):
    """Raised after a reply was cut short by an interrupt; the partial reply is shown and kept.

    An error rather than a quiet return, so that "Run all" stops at this cell as at any interrupt.
    """


class ConversationFileInvalid(LlmMagicsError):
    """Raised when a file given to `%llm_history --load` does not hold a conversation."""


class ConversationTooLarge(ConversationFileInvalid):
    """Raised when a file given to `%llm_history --load` is larger, or holds more messages, than the
    limits in `llm_magics.conversation` (`MAX_FILE_BYTES`, `MAX_MESSAGES`)."""


class ConversationNotSaved(LlmMagicsError):
    """Raised when `%llm_history --save` cannot write its file (a missing folder, a folder in the
    way, no permission) or the conversation holds text no file can encode; nothing was written."""


class WouldOverwrite(LlmMagicsError):
    """Raised when `%llm_history --save` would replace a file that this extension did not write
    (`--force` replaces it anyway)."""


class UnsafeWeights(ModelLoadFailed):
    """Raised when pickle weights (`pytorch_model.bin`) hold more than tensors: loading them would
    run code, and torch's `weights_only` check refused them."""


class ChatTemplateFailed(LlmMagicsError):
    """Raised when the model's chat template cannot render a conversation: it raised an error of its
    own, or transformers' sandbox blocked it (an unsafe attribute, a call it does not allow)."""


class RemoteError(LlmMagicsError):
    """Base of the failures of a remote engine; nothing in the session changed when one is raised."""


class RemoteExtraMissing(RemoteError):
    """Raised by `%llm_load --endpoint` when the `openai` package is not installed."""


class ServerUnreachable(RemoteError):
    """Raised when nothing answers at the endpoint: the connection was refused, or the host name
    does not resolve."""


class ServerTimeout(RemoteError):
    """Raised when the server does not answer within the connect or read timeout (traits
    `LlmMagics.remote_connect_timeout` and `remote_read_timeout`)."""


class AuthenticationFailed(RemoteError):
    """Raised on 401/403: the server wants an API key, or another one; the message names the
    environment variable to set (never the key)."""


class ModelNotServed(RemoteError):
    """Raised when the server does not serve the model asked for; the message lists the served ones."""


class ContextTooLong(RemoteError, InvalidOption):
    """Raised when the server refuses a prompt that, with the reply, exceeds the model's context."""


class ServerRejected(RemoteError):
    """Raised when the server refuses a request for another reason (a 4xx or 5xx answer, or an
    error sent in the middle of a stream before any text); the message quotes the server."""


class LogprobsRefused(ServerRejected):
    """Raised when the server refuses the number of log-probabilities `%llm_next` asked for (vLLM
    answers 400 above its `--max-logprobs`, 20 unless started with more); nothing changed."""


class SamplingRefused(ServerRejected):
    """Raised when the server answers 400 to the one-token request that lets it draw the next token
    (`%llm_next --steps N --sample`, `--live`'s sample button): its sampling fields, its seed or the
    log-probabilities asked beside them; the message quotes the server, and nothing changed."""


class ServerDisconnected(RemoteError):
    """Raised when the connection drops before any reply text arrived (the server stopped or
    crashed). Once some text had arrived, the partial reply is kept instead."""


class NotOpenAICompatible(RemoteError):
    """Raised when the endpoint answers something other than OpenAI-shaped JSON (an HTML page,
    another API)."""


# --------------------------------------------------------------------------- engine capabilities


class NoAlternatives(LlmMagicsError):
    """Raised when the last reply has no token scores to show (`%llm_history --alternatives`,
    `llm_magics.reply_alternatives`): it was not asked with --alternatives, it was interrupted,
    the conversation was loaded or reset since, or the server sent no log-probabilities."""


class NotSupported(LlmMagicsError):
    """Raised when the model's engine cannot do what a magic needs (probabilities from a
    tokenizer-only load or a server that gives none, for `%llm_next`)."""
