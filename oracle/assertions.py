"""``oracle.assert_gradients``: one case judged from inside a test suite, the report as the assertion message.

    def test_my_lstm(bptt_case):                       # parametrised by the pytest plugin (oracle.pytest_plugin)
        oracle.assert_gradients(my_lstm_gradients, bptt_case)

The case is judged as ``bptt check`` judges it (the same bound, truth and
reading of the candidate's result); a candidate that raises
``oracle.Unsupported`` for it makes the test a skip, not a pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contract.errors import BadType
from oracle.checker.candidate import Unsupported
from oracle.checker.isolate import DEFAULT_TIMEOUT
from oracle.judge import Report


@dataclass(frozen=True)
class Selected:
    """One case as the plugin hands it to a test: the case, where it was read from (a golden file, or None for a
    built-in case), and the layout the candidate answers in. Its ``str`` is the case's name (the test's id)."""

    case: object
    path: str | None = None
    layout: str | None = None

    def __str__(self) -> str:
        return self.case.name

    def __repr__(self) -> str:
        return f"Selected({self.case.name!r}" + (f", path={self.path!r}" if self.path else "") + \
            (f", layout={self.layout!r}" if self.layout else "") + ")"


def _resolve(case, layout: str | None) -> tuple:
    """(case, path or None, layout) of whatever names a case."""
    from oracle.cases import CLASSES, parse_case

    if isinstance(case, Selected):
        return case.case, case.path, layout or case.layout
    if isinstance(case, CLASSES):
        return case, None, layout
    if isinstance(case, os.PathLike) or isinstance(case, str) and case.endswith(".safetensors"):
        from oracle.files.golden import load_golden

        loaded, _, _, info = load_golden(case)
        return loaded, str(case), layout or info.get("layout", "torch")
    if isinstance(case, str):
        return parse_case(case), None, layout
    raise BadType(f"case must be a case name, a case (oracle.Case, ModuleCase), a golden file's path or the "
                  f"plugin's bptt_case; got {type(case).__name__} {case!r}. Remedy: e.g. "
                  "'module/LSTM/L1/T5-B3-I3-H4/lengths-full/up-both/float64'.")


def assert_gradients(fn: Callable | str, case, *, layout: str | None = None, isolate: bool = False,
                     timeout: float = DEFAULT_TIMEOUT) -> Report:
    """Judge ``fn`` (``manual.gradients``' or ``manual.module_gradients``' signature, or "MODULE:FUNCTION") on
    one case; return the report, or raise AssertionError whose message is the report (tensor, gate, layer,
    direction, first wrong step).

    ``case``: a case name, a case, a golden file's path (its inputs, and its
    truth recomputed and compared with the stored one), or the plugin's
    ``bptt_case``. ``layout``: the candidate's, "torch" or "onnx" (default: a
    golden file's own, else torch's). ``isolate``: run it in a worker
    process with ``timeout`` (default: in this process, where a debugger and
    ``pytest --pdb`` reach it). Raises ``oracle.Unsupported`` when the
    candidate does not support the case (the plugin makes that a skip).
    """
    from oracle.checker.run import check_prepared, golden_truth, prepare

    __tracebackhide__ = True  # pytest shows the test's line and the report, not this function's source
    the_case, path, layout = _resolve(case, layout)
    if path is not None:
        from oracle.files.golden import load_golden

        _, inputs, stored, _ = load_golden(path)
        p = prepare(the_case, inputs, golden_truth(Path(path), the_case, inputs, stored), layout or "torch")
    else:
        p = prepare(the_case, the_case.inputs(), layout=layout or "torch")
    result = check_prepared(fn, p, isolate=isolate, timeout=timeout)
    if result.skipped:
        raise Unsupported(result.skipped)
    if not result.ok:
        raise AssertionError(str(result) + (f"\n{result.output}" if result.output else ""))
    return result.report


__all__ = ["Selected", "assert_gradients"]
