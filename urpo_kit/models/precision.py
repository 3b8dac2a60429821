"""Reading a model at another precision for a while, and putting it back exactly."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from urpo_kit.errors import UrpoError


@contextlib.contextmanager
def cast_weights(tensors: Iterable[Any], dtype: Any) -> Iterator[None]:
    """Cast the floating tensors not already in `dtype` in place for the duration. Afterwards each
    holds its original data again: the original is kept, not cast back, so a lossy cast (float32 adapters read in
    bfloat16) loses nothing; the tensors keep their identity, so an optimizer's references stay valid."""
    chosen = [t for t in tensors if t.is_floating_point() and t.dtype != dtype]
    if any(hasattr(t, "ds_id") for t in chosen):
        raise UrpoError(f"cannot read DeepSpeed ZeRO-3 partitioned weights in {dtype}: they are gathered per layer; "
                        "read the model at the precision it was loaded in under ZeRO-3")
    originals = [t.data for t in chosen]
    for t in chosen:
        t.data = t.data.to(dtype)
    try:
        yield
    finally:
        for t, original in zip(chosen, originals):
            t.data = original
