"""Running a candidate BPTT on cases and judging it against the float64 truth."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import reference
from oracle.cases import Case, all_cases, run, select
from oracle.compare import Report
from oracle.progress import Progress
from oracle.truth import Truth, truth

OPTIONAL = ("h", "z")  # per-step internals: checked when a candidate gives them


@dataclass
class CaseResult:
    case: Case
    report: Report | None = None
    error: str = ""  # the candidate raised, or its result was unusable

    @property
    def ok(self) -> bool:
        return not self.error and self.report is not None and self.report.ok

    def __str__(self) -> str:
        if self.error:
            return f"{self.case.name}: FAIL (the candidate gave no gradient set)\n  {self.error}"
        return str(self.report)


@dataclass
class CheckResult:
    results: list[CaseResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok]

    def __str__(self) -> str:
        lines = [str(r) for r in self.failures]
        n, f = len(self.results), len(self.failures)
        lines.append(f"{n} cases, {n - f} passed, {f} failed")
        return "\n".join(lines)


def cast_inputs(inputs: dict, dtype: str) -> dict:
    """Float inputs in ``dtype`` (NumPy); integer targets unchanged."""
    f = lambda a: a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a  # noqa: E731
    return {"params": {k: f(v) for k, v in inputs["params"].items()}, "x": f(inputs["x"]),
            "target": f(inputs["target"]), "h0": f(inputs["h0"])}


def judge(candidate: Callable, case: Case, inputs: dict, want: Truth) -> CaseResult:
    """Run ``candidate`` on ``inputs`` (NumPy, the case's dtype) and compare it with ``want``."""
    try:
        got = run(candidate, inputs, case.kwargs)
        if not isinstance(got, dict):
            return CaseResult(case, error=f"returned {type(got).__name__}, expected a dict name → array")
    except Exception as e:  # noqa: BLE001 - a candidate's failure is a result, not a crash
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        return CaseResult(case, error=last)
    ref = run(reference.gradients, inputs, case.kwargs) if case.dtype != "float64" else None
    return CaseResult(case, want.compare(got, ref=ref, optional=OPTIONAL, title=case.name))


def check_golden(folder: str | Path, candidate_for: Callable[[Case], Callable], pattern: str | None = None,
                 progress: bool | None = None) -> CheckResult:
    """Judge, on each golden file in ``folder`` (names containing ``pattern``), ``candidate_for(case)``.

    Every file is loaded, and so refused if hostile (``GoldenFileError``),
    before any candidate runs.
    """
    from oracle.golden import load_golden

    loaded = [load_golden(p)[:3] for p in sorted(Path(folder).glob("*.safetensors"))]
    loaded = [item for item in loaded if not pattern or pattern in item[0].name]
    bar = Progress(len(loaded), "check", enabled=progress)
    out = CheckResult()
    for case, inputs, want in loaded:
        out.results.append(judge(candidate_for(case), case, cast_inputs(inputs, case.dtype), want))
        bar.step(case.name)
    return out


def check(candidate: Callable, cases: str | Iterable[Case] | None = None, *, golden: str | Path | None = None,
          progress: bool | None = None) -> CheckResult:
    """Judge ``candidate`` (``manual.gradients``' signature) on cases.

    ``cases``: None for the whole built-in matrix, a substring of case names,
    or a list of ``Case``. ``golden``: a folder of golden files written by
    ``bptt export``, read instead of the built-in matrix (``cases`` then
    filters them by substring).
    """
    if golden is not None:
        return check_golden(golden, lambda case: candidate, cases if isinstance(cases, str) else None, progress)
    chosen = select(all_cases(), cases) if cases is None or isinstance(cases, str) else list(cases)
    bar = Progress(len(chosen), "check", enabled=progress)
    out = CheckResult()
    for case in chosen:
        inputs = case.inputs()
        out.results.append(judge(candidate, case, inputs, truth(inputs, case.kwargs)))
        bar.step(case.name)
    return out
