"""The one comparison helper: shape, then dtype, then values; failures name the tensor."""

from __future__ import annotations

import pytest

from oracle.cases.seed import run as call
from oracle.groundtruth import Truth
from oracle.judge import compare, dtype_name

# Statistics for the closing summary (printed by conftest.pytest_terminal_summary).
STATS = {"comparisons": 0, "worst_float64": 0.0, "worst_where": ""}


def assert_grads_match(got: dict, want: dict, *, dtype: str | None = None, ref: dict | None = None,
                       tol: float | None = None, where: str = "") -> None:
    """Judge every tensor of ``want`` (a float64 gradient set, or an oracle.groundtruth.Truth) in ``got``.

    Shape first, then dtype (when given), then values by the tolerance policy
    of oracle.compare; the assertion message names the tensor.
    """
    truth = want if isinstance(want, Truth) else Truth(want, None, None)
    want = truth.grads
    assert set(want) <= set(got), f"{where}: missing tensors {sorted(set(want) - set(got))}"
    for k in want:
        assert tuple(got[k].shape) == tuple(want[k].shape), (
            f"{where}: {k} has shape {tuple(got[k].shape)}, expected {tuple(want[k].shape)}")
        if dtype is not None:
            assert dtype_name(got[k]) == dtype, f"{where}: {k} has dtype {dtype_name(got[k])}, expected {dtype}"
    report = compare(got, want, dtype=dtype or "float64", ref=ref, sens=truth.sens, amp=truth.amp, tol=tol,
                     title=where)
    STATS["comparisons"] += len(report.tensors)
    if all(dtype_name(got[k]) == "float64" for k in want) and report.worst > STATS["worst_float64"]:
        STATS["worst_float64"], STATS["worst_where"] = report.worst, where
    assert report.ok, str(report)


__all__ = ["assert_grads_match", "call"]


def export_golden(folder, names: list[str]):
    """``bptt export folder --case NAME …``: golden files of the named built-in cases; the folder."""
    from oracle.cli import main

    argv = ["export", str(folder)]
    for name in names:
        argv += ["--case", name]
    assert main(argv) == 0
    return folder


SLOW = pytest.mark.slow


def fast_subset(cases, key, ids=lambda c: c.name) -> list:
    """``cases`` as pytest params: the first case of each ``key(case)`` (a cell, a form) in the fast subset
    (``pytest -m "not slow"``), the others marked slow; the full run takes them all."""
    seen, out = set(), []
    for c in cases:
        out.append(pytest.param(c, id=ids(c), marks=SLOW if key(c) in seen else ()))
        seen.add(key(c))
    return out
