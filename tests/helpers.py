"""The one comparison helper: shape, then dtype, then values; failures name the tensor."""

from __future__ import annotations

import numpy as np

from oracle.compare import compare, dtype_name, to_numpy

# Statistics for the closing summary (printed by conftest.pytest_terminal_summary).
STATS = {"comparisons": 0, "worst_float64": 0.0, "worst_where": ""}


def as_float64(inputs: dict) -> dict:
    """A case's inputs widened to float64 (targets of cross_entropy stay integer)."""
    f = lambda a: a if not np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)  # noqa: E731
    return {"params": {k: f(v) for k, v in inputs["params"].items()},
            "x": f(inputs["x"]), "target": f(inputs["target"]), "h0": f(inputs["h0"])}


def call(fn, inputs: dict, kwargs: dict) -> dict:
    return fn(inputs["params"], inputs["x"], inputs["target"], h0=inputs["h0"], **kwargs)


def assert_grads_match(got: dict, want: dict, *, dtype: str | None = None, ref: dict | None = None,
                       where: str = "") -> None:
    """Judge every tensor of ``want`` (float64 truth) in ``got``.

    Shape first, then dtype (when given), then values by the tolerance policy
    of oracle.compare; the assertion message names the tensor.
    """
    assert set(want) <= set(got), f"{where}: missing tensors {sorted(set(want) - set(got))}"
    for k in want:
        assert tuple(got[k].shape) == tuple(want[k].shape), (
            f"{where}: {k} has shape {tuple(got[k].shape)}, expected {tuple(want[k].shape)}")
        if dtype is not None:
            assert dtype_name(got[k]) == dtype, f"{where}: {k} has dtype {dtype_name(got[k])}, expected {dtype}"
    report = compare(got, want, ref=ref, title=where)
    STATS["comparisons"] += len(report.tensors)
    if all(dtype_name(got[k]) == "float64" for k in want) and report.worst > STATS["worst_float64"]:
        STATS["worst_float64"], STATS["worst_where"] = report.worst, where
    assert report.ok, str(report)


__all__ = ["as_float64", "assert_grads_match", "call", "to_numpy"]
