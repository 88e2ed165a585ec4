"""transformers' failures while loading, mapped to our one-line errors by exception type, in one place."""

from __future__ import annotations

import contextlib
import pickle
import struct
from collections.abc import Iterator

from ... import hub
from ...errors import ModelLoadFailed, QuantizationUnavailable, UnsafeWeights, first_line
from .plan import LoadPlan, Quantization


def reason_of(error: BaseException) -> str:
    return first_line(error, 300) or type(error).__name__


@contextlib.contextmanager
def transformers_errors(plan: LoadPlan) -> Iterator[None]:
    """Turn transformers' failures on bad files into one line, by exception type; our bugs keep
    their traceback."""
    from safetensors import SafetensorError

    try:
        yield
    except OSError as error:
        hub_id = plan.source.hub_id
        refusal = hub.hub_refusal(error, hub_id, plan.revision) if hub_id else None
        if refusal is not None:
            raise refusal from error
        raise ModelLoadFailed(f"Cannot load {plan.source.label}: {reason_of(error)}") from error
    except ImportError as error:
        if plan.quantization is Quantization.NONE:
            raise
        # transformers checks for (a working) bitsandbytes only once it builds the quantizer.
        raise QuantizationUnavailable(f"--quant {plan.quantization} failed: {reason_of(error)}") from error
    except (SafetensorError, ValueError, KeyError, RecursionError, struct.error) as error:
        raise ModelLoadFailed(f"Cannot load {plan.source.label}: {reason_of(error)}") from error
    except pickle.UnpicklingError as error:
        # torch.load(weights_only=True) met something other than tensors in a pickle: code that
        # would run on load, or a corrupt file. Its own message suggests turning the check off.
        raise UnsafeWeights(
            f"Refused {plan.source.label}: its pickle weights hold more than tensors (code that would run "
            "on load, or a corrupt file), so torch's weights_only check stopped them and nothing ran. "
            "Use safetensors weights from a source you trust."
        ) from error
