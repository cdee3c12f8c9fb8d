"""Low-precision cases (bfloat16, float16): their numbers, and the rule they are judged by.

A low-precision case's inputs are numbers of its dtype (rounded to nearest,
ties to even, from the seeded float64 draw), so every implementation starts
from the same exact inputs, and its truth is computed in float64 from them.
NumPy has no bfloat16: a bfloat16 case's arrays are float32 holding exactly
bfloat16 values (``torch.from_numpy(a).bfloat16()`` is exact), float16's are
NumPy float16. The candidate computes in the case's dtype however it likes.

The rule (``oracle.policy``: LOW_FACTOR, LOW_FLOOR, LOW_CAP): a tensor's
normalised error may be at most LOW_FACTOR × autograd's in that dtype on the
same inputs, never below LOW_FLOOR·eps(dtype), never above LOW_CAP.
"""

from __future__ import annotations

import numpy as np

LOW = ("bfloat16", "float16")


def container(dtype: str) -> str:
    """The NumPy dtype that holds a case's numbers: float32 for bfloat16, the dtype itself otherwise."""
    return "float32" if dtype == "bfloat16" else dtype


def round_to(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` rounded to ``dtype``'s numbers (nearest, ties to even), held in :func:`container`'s dtype."""
    if dtype != "bfloat16":
        return a.astype(dtype)
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000  # round the low 16 bits away, ties to even
    return bits.astype(np.uint32).view(np.float32).reshape(np.shape(a))


def torch_dtype(dtype: str):
    import torch

    return getattr(torch, dtype)


__all__ = ["LOW", "container", "round_to", "torch_dtype"]
