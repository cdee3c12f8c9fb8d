"""Judging a candidate BPTT on cases against the float64 truth, so that a wrong gradient never passes.

For each case, in this order:

1. the reference side, from the case's pristine inputs: the float64 truth
   (built-in cases: autograd; golden files: stored) and, for a float32 case,
   autograd's own error in float32 (``Prepared``);
2. the candidate, on its own copies of those inputs, in a worker process
   unless ``isolate=False`` (``oracle.checker.isolate``): twice, and a change to its
   inputs, an exception, an exit, a crash or a hang is the case's failure;
3. the judgement, here, by the case's bound (``oracle.judge.BOUND``): the
   case's dtype, sizes and truth; nothing the candidate returns moves it.
"""

from __future__ import annotations

import io
import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract.errors import BadType, BadValue
from contract.spec import is_int
from oracle.cases import CLASSES, builtin_cases
from oracle.cases.seed import Case, all_cases
from oracle.cases.select import parse_shard, select, shard_of
from oracle.checker.candidate import CandidateError, Outcome, call, load, reference_to
from oracle.checker.isolate import DEFAULT_TIMEOUT, run_isolated
from oracle.checker.processes import stop_if_importing_main
from oracle.groundtruth import Truth
from oracle.judge import Report
from oracle.layouts import LayoutError, check_layout
from oracle.policy import GOLDEN_AGREE
from oracle.progress import Progress
from oracle.summary import counts, exit_status, group_table, record


class NothingToCheckError(BadValue):
    """The run could not be made: no case selected, or no folder of cases (the CLI's exit code 2)."""


@dataclass
class CaseResult:
    case: Case
    report: Report | None = None
    error: str = ""  # the candidate raised, crashed, hung, changed its inputs, or returned something unusable
    skipped: str = ""  # the candidate does not support the case (oracle.Unsupported): neither passed nor failed
    output: str = ""  # what its worker process printed (check_prepared only; a run keeps it on CheckResult)

    @property
    def ok(self) -> bool:
        """Not failed: passed, or skipped (a skip is counted apart, see :attr:`CheckResult.ok`)."""
        return bool(self.skipped) or (not self.error and self.report is not None and self.report.ok)

    def record(self) -> dict:
        """This case as JSON (``oracle.summary.record``)."""
        return record(self.case, {} if self.report is None else {"candidate": self.report},
                      skipped=self.skipped, error=self.error)

    def __str__(self) -> str:
        if self.skipped:
            return f"{self.case.name}: skipped (unsupported: {self.skipped})"
        if self.error:
            return f"{self.case.name}: FAIL (no usable gradient set)\n  {self.error}"
        return str(self.report)


@dataclass
class CheckResult:
    results: list[CaseResult] = field(default_factory=list)
    output: str = ""  # what the candidate's worker processes printed (shown with a failure, or asked for)
    shard: str | None = None  # "i/N" when this run is one shard of a split selection

    @property
    def ok(self) -> bool:
        """Every case judged passed, and at least one was judged (all skipped is no verdict: exit 2)."""
        return exit_status(self.records()) == 0

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok]

    @property
    def skipped(self) -> list[CaseResult]:
        return [r for r in self.results if r.skipped]

    def records(self) -> list[dict]:
        return [r.record() for r in self.results]

    @property
    def exit_status(self) -> int:
        """The CLI's: 0 every judged case passed, 1 one failed, 2 nothing was judged (all skipped); a shard that
        holds none of the selection is 0 (`bptt merge` judges the whole)."""
        if not self.results and self.shard is not None:
            return 0
        return exit_status(self.records())

    def summary(self) -> str:
        """``30 cases: 24 passed, 6 skipped (unsupported: proj_size), 0 failed``."""
        empty = f" (shard {self.shard} holds none of the selection)" if self.shard and not self.results else ""
        return counts(self.records()) + empty

    def to_json(self) -> dict:
        return {"command": "check", "ok": self.ok, "shard": self.shard, "cases": self.records()}

    def reports(self, verbose: bool = False) -> str:
        """The failing cases' reports (every case's with ``verbose``)."""
        return "\n".join(str(r) for r in (self.results if verbose else self.failures))

    def closing(self, quiet: bool = False) -> str:
        """The summary per group (not when ``quiet``) and the count line."""
        return self.summary() if quiet else f"{group_table(self.records())}\n{self.summary()}"

    def text(self, verbose: bool = False) -> str:
        """Failing reports (every report with ``verbose``), the summary per group, the counts."""
        return "\n".join(part for part in (self.reports(verbose), self.closing()) if part)

    def __str__(self) -> str:
        return self.text()


@dataclass
class Prepared:
    """One case's reference side, made from its pristine inputs before any candidate runs."""

    case: Case
    inputs: dict  # NumPy, the case's dtype: what the candidate gets a copy of
    want: Truth
    ref: dict | None  # autograd in the case's dtype on the same inputs (None in float64)
    layout: str = "torch"  # the names and shapes the candidate's gradients come in (oracle.layouts)

    @property
    def expect(self) -> dict[str, list[tuple]]:
        """name → the shapes a candidate's gradient may have, in its layout: what a worker lets cross
        (``oracle.checker.isolate``); any other name is not judged, any other shape crosses as its shape alone."""
        given = {k: [tuple(s) for s in v] for k, v in self.case.expected_grads(self.layout).items()}
        if self.layout != "torch":
            return given
        return {k: list(dict.fromkeys([tuple(v.shape), *given.get(k, [])])) for k, v in self.want.grads.items()}


def golden_truth(path, case, inputs: dict, stored: Truth) -> Truth:
    """The truth a golden case is judged by: recomputed from the file's own inputs, never read from the file (its
    SHA-256 digests prove integrity, not origin: anyone can recompute them). The file's stored gradients must
    agree with it, or the file is refused; its stored sens and amp are for readers in other languages."""
    from oracle.files.readers import GoldenFileError

    want = case.truth(inputs)
    if set(want.grads) != set(stored.grads):
        raise GoldenFileError(path, f"its gradients {sorted(set(want.grads) ^ set(stored.grads))} are unexpected "
                                    f"or missing for case {case.name}")
    for name, g in want.grads.items():
        top = float(np.abs(g).max(initial=0.0))
        d = float(np.abs(np.asarray(stored.grads[name], dtype=np.float64) - g).max(initial=0.0))
        if not d <= GOLDEN_AGREE * max(top, np.finfo(np.float64).tiny):
            raise GoldenFileError(path, f"its stored truth {name!r} differs from the float64 truth recomputed from "
                                        f"its own inputs by {d:.2e} (largest entry {top:.2e})",
                                  "export the case again with `bptt export`; a golden file changed after export "
                                  "is not a golden case")
    return want


def prepare(case, inputs: dict, want: Truth | None = None, layout: str = "torch") -> Prepared:
    """The reference side of ``case`` on ``inputs`` (``want``: its truth, computed when None); the candidate's
    gradients will be read in ``layout`` (a seed-model case has its own names in every layout)."""
    want = case.truth(inputs) if want is None else want
    layout = case.check_layout(layout)
    inputs = case.cast(inputs)
    ref = case.autograd(inputs) if case.dtype != "float64" else None  # autograd's own error in the case's dtype
    return Prepared(case, inputs, want, ref, layout)


def judge(p: Prepared, outcome: Outcome) -> CaseResult:
    """The verdict on one case: every call's gradient set by the case's bound; the first failing one reported."""
    if outcome.skipped:
        return CaseResult(p.case, skipped=outcome.skipped)
    if outcome.error:
        return CaseResult(p.case, error="; ".join([outcome.error, *outcome.notes]))
    if not outcome.grads:
        return CaseResult(p.case, error="the candidate returned nothing")
    first, notes = None, []
    for i, got in enumerate(outcome.grads):
        try:
            got, bad = p.case.from_candidate(got, p.layout, notes if i == 0 else None)
        except (ValueError, TypeError, IndexError, AttributeError) as e:  # LayoutError is a ValueError
            return CaseResult(p.case, error=f"its gradients are not in ONNX's layout: {e}")
        title = p.case.name if i == 0 else (f"{p.case.name} (call {i + 1} of {len(outcome.grads)} on the same "
                                            "inputs; the first call passed: state kept between calls?)")
        report = p.want.compare(got, dtype=p.case.dtype, ref=p.ref, optional=p.case.optional, title=title,
                                skip=p.case.not_needed)
        report.notes = notes + outcome.notes
        for name, why in bad.items():  # a tensor of a shape the case's layout does not have, said in its terms
            if name in {t.name for t in report.tensors}:
                report[name].status, report[name].why = "FAIL", why
        report = p.case.report_in(report, p.layout)
        if not report.ok:
            return CaseResult(p.case, report)
        first = first or report
    return CaseResult(p.case, first)  # every call passed: the first call's report


def _drive(n: int, prepare_case: Callable[[int], Prepared], runner: Callable, *, progress: bool | None,
           shard: str | None = None) -> CheckResult:
    """Prepare, run and judge cases 0 … n−1; results in case order.

    ``runner(n, task, done, stream)``: :func:`make_runner`'s, which runs the candidate on each task.
    """
    if n == 0 and shard is not None:  # a shard may hold none of the selection: nothing to judge, nothing wrong
        return CheckResult(shard=shard)
    if n == 0:
        raise NothingToCheckError("no case selected. Remedy: `bptt verify --list` shows the built-in names; "
                                  "loosen -k / the cases expression.")
    bar = Progress(n, "check", enabled=progress)
    prepared: dict[int, Prepared] = {}
    results: list[CaseResult | None] = [None] * n

    def task(i: int) -> tuple:
        prepared[i] = prepare_case(i)
        return prepared[i].case, prepared[i].inputs, prepared[i].expect

    def done(i: int, outcome: Outcome) -> None:
        if results[i] is not None:  # judged already: its worker died after answering it (oracle.checker.isolate)
            results[i] = CaseResult(results[i].case, error=outcome.error)
            return
        results[i] = judge(prepared.pop(i), outcome)
        bar.step(results[i].case.name)

    printed = io.StringIO()  # the workers' output: the caller shows it with a failure (or when asked)
    runner(n, task, done, printed)
    return CheckResult(results, output=printed.getvalue(), shard=shard)


def _in_process(fn: Callable, n: int, task: Callable, done: Callable, stream) -> None:
    for i in range(n):
        case, inputs, expect = task(i)
        done(i, call(fn, case, inputs, expect=expect))


def make_runner(candidate, isolate: bool, jobs: int | None = None, timeout: float = DEFAULT_TIMEOUT,
            ray: str | None = None, num_gpus: float = 0) -> Callable:
    """How the candidate will run, ``runner(n, task, done, stream)``, settled before any case is loaded (so a bad
    spec fails first): worker processes here (``isolate``), Ray tasks (``ray``: "local" or an address), or this
    process."""
    if isolate or ray is not None:
        stop_if_importing_main()
        ref = reference_to(candidate)
        if ray is not None:
            from oracle.checker.cluster import run_ray

            return lambda n, task, done, stream: run_ray(ref, n, task, done, address=ray, jobs=jobs,
                                                         timeout=timeout, num_gpus=num_gpus, stream=stream)
        return lambda n, task, done, stream: run_isolated(ref, n, task, done, jobs=jobs, timeout=timeout,
                                                          stream=stream)
    try:
        fn = load(("spec", candidate)) if isinstance(candidate, str) else candidate
    except (CandidateError, KeyboardInterrupt):
        raise
    except BaseException as e:  # noqa: BLE001 - in-process, an import error (sys.exit too) is reported like the isolated one
        raise CandidateError(f"the candidate {candidate!r} could not be loaded: {type(e).__name__}: {e}. "
                             "Remedy: fix the module, or check the MODULE:FUNCTION spelling.") from None
    if not callable(fn):
        raise BadType(f"candidate must be a function with manual.gradients' signature; got "
                        f"{type(fn).__name__}. Remedy: pass the function itself, or 'MODULE:FUNCTION'.")
    return lambda n, task, done, stream: _in_process(fn, n, task, done, stream)


def check_prepared(candidate: Callable | str, p: Prepared, *, isolate: bool = False,
                   timeout: float = DEFAULT_TIMEOUT) -> CaseResult:
    """One prepared case judged (``oracle.assert_gradients``): the candidate run in this process, or in a worker
    (``isolate``); the worker's output, if any, kept on the result as ``output``."""
    result = _drive(1, lambda i: p, make_runner(candidate, isolate, 1, timeout), progress=False)
    one = result.results[0]
    one.output = result.output
    return one


def golden_cases(folder: str | Path, pattern: str | None = None, layout: str | None = None,
                 shard: tuple[int, int] | None = None) -> list:
    """(case, inputs, truth, layout) of every golden file in ``folder`` whose case name the expression ``pattern``
    selects (``oracle.cases.select``), in ``shard`` (i, N) when given; ``layout`` that of the candidate's
    gradients: the one given, or else the file's own.

    Every file is loaded, and so refused if hostile (``GoldenFileError``),
    before any candidate runs; each chosen case's truth is recomputed from
    its inputs, and a file whose stored gradients differ from it is refused. ``NothingToCheckError`` when the folder is
    missing or holds no golden file.
    """
    from oracle.files.golden import load_golden

    folder = Path(folder)
    if not folder.is_dir():
        raise NothingToCheckError(f"golden folder {str(folder)!r} is not a folder. Remedy: write golden cases "
                                  f"with `bptt export {folder}`.")
    paths = sorted(folder.glob("*.safetensors"))
    if not paths:
        raise NothingToCheckError(f"golden folder {str(folder)!r} holds no .safetensors golden cases. "
                                  f"Remedy: `bptt export {folder}`.")
    loaded = [(p, *load_golden(p)) for p in paths]
    keep = {c.name for c in shard_of(select([case for _, case, *_ in loaded], pattern), shard)}
    chosen = [(p, case, inputs, stored, layout or info.get("layout", "torch"))
              for p, case, inputs, stored, info in loaded if case.name in keep]
    _layouts_possible((case, lay) for _, case, _, _, lay in chosen)
    return [(case, inputs, golden_truth(p, case, inputs, stored), lay) for p, case, inputs, stored, lay in chosen]


def golden_names(folder: str | Path, pattern: str | None = None, shard: tuple[int, int] | None = None) -> list[str]:
    """The names of the golden cases in ``folder`` that ``pattern`` and ``shard`` select (each file loaded, so
    refused if hostile; no truth recomputed)."""
    from oracle.files.golden import load_golden

    folder = Path(folder)
    if not folder.is_dir():
        raise NothingToCheckError(f"golden folder {str(folder)!r} is not a folder. Remedy: write golden cases "
                                  f"with `bptt export {folder}`.")
    cases = [load_golden(p)[0] for p in sorted(folder.glob("*.safetensors"))]
    return [c.name for c in shard_of(select(cases, pattern), shard)]


def _layouts_possible(pairs) -> None:
    """Every (case, layout) has a form in its layout, or the run cannot be made (before any candidate runs)."""
    for case, lay in pairs:
        try:
            case.check_layout(lay)
        except LayoutError as e:
            raise NothingToCheckError(f"{case.name}: {e} (or leave the case out with -k)") from None


def _folder(arg: str, v) -> None:
    if not isinstance(v, (str, os.PathLike)):
        raise BadType(f"{arg} must be a folder name (str or pathlib.Path); got {type(v).__name__} {v!r}. "
                        f"Remedy: {arg}='golden/'.")


def _check_args(cases, golden, timeout, jobs):
    """``cases`` (a list, if an iterable was given: read once), or the TypeError / ValueError naming the
    argument of :func:`check` that cannot be used, before anything runs."""
    if golden is not None:
        _folder("golden", golden)
        if cases is not None and not isinstance(cases, str):
            raise BadValue("cases must be None or a substring of case names when golden= is given (the golden "
                             f"folder holds the cases); got {type(cases).__name__}. Remedy: cases=None, or leave "
                             "golden out to check these cases.")
    elif cases is not None and not isinstance(cases, str):
        if isinstance(cases, (bytes, Mapping)) or not isinstance(cases, Iterable):
            raise BadType(f"cases must be None, a substring of case names, or a list of cases; got "
                            f"{type(cases).__name__}. Remedy: cases='module/', or oracle.all_cases()[:5].")
        cases = list(cases)
        bad = next((c for c in cases if not isinstance(c, CLASSES)), None)
        if bad is not None:
            raise BadType(f"cases must hold cases (oracle.Case, ModuleCase); got {type(bad).__name__} {bad!r}. "
                            "Remedy: pass a substring of case names instead, e.g. cases='many-to-one/'.")
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not 0 < timeout < math.inf:
        raise BadValue(f"timeout must be a finite positive number of seconds; got {timeout!r}. "
                         f"Remedy: timeout={DEFAULT_TIMEOUT:g}.")
    if jobs is not None and (not is_int(jobs) or jobs < 1):
        raise BadValue(f"jobs must be a positive integer or None (the cores); got {jobs!r}. Remedy: jobs=1.")
    return cases


def check(candidate: Callable | str, cases: str | Iterable[Case] | None = None, *,
          golden: str | Path | None = None, isolate: bool = True, jobs: int | None = None,
          timeout: float = DEFAULT_TIMEOUT, progress: bool | None = None,
          layout: str | None = None, shard: str | None = None, ray: str | None = None,
          num_gpus: float = 0) -> CheckResult:
    """Judge ``candidate`` (``manual.gradients``' signature, or ``"MODULE:FUNCTION"``) on cases.

    ``cases``: None for the seed model's built-in matrix, a ``-k`` expression
    over case names (``oracle.cases.select``: "module/" for the module matrix,
    whose candidates have ``manual.module_gradients``' signature, "LSTM and L1
    and not bi"), or a list of cases. ``golden``: a folder of golden files
    written by ``bptt export``, read instead of the built-in matrix (``cases``
    then selects among them). ``shard``: "i/N", the i-th of N stable parts of
    the selection (``bptt merge`` combines their reports).

    A case the candidate does not support (it raises ``oracle.Unsupported``,
    or its ``supports`` attribute declines) is skipped, counted apart.

    ``isolate`` (default): each case runs in a worker process (spawn), up to
    ``jobs`` at once (default: the cores), each given ``timeout`` seconds; a
    crash, exit or hang is that case's failure. The candidate must then be
    importable by the worker: a module-level function (pickled by reference)
    or a ``"MODULE:FUNCTION"`` string. ``isolate=False`` runs it in this
    process (for a debugger; no timeout). ``ray``: "local" or a Ray address;
    each case is then a Ray task (the ``ray`` extra), isolated the same way,
    ``num_gpus`` per task.

    Raises ``NothingToCheckError`` when nothing is selected or the golden
    folder is missing or empty, ``oracle.files.readers.GoldenFileError`` for a
    refused file, ``oracle.checker.isolate.CandidateError`` when the candidate cannot
    be loaded.

    ``layout``: the names and shapes the candidate returns module gradients
    in, ``"torch"`` or ``"onnx"`` (``oracle.layouts``); None: each golden
    file's own layout, torch's for built-in cases. The candidate is called
    with ``manual.module_gradients``' arguments in either case.
    """
    if layout is not None:
        check_layout(layout)
    cases = _check_args(cases, golden, timeout, jobs)
    part = None if shard is None else parse_shard(shard)
    runner = make_runner(candidate, isolate, jobs, timeout, ray, num_gpus)
    if golden is not None:
        items = golden_cases(golden, cases if isinstance(cases, str) else None, layout, part)
        prep = lambda i: prepare(*items[i])  # noqa: E731
        n = len(items)
    else:
        if cases is None:  # the seed model's matrix: a candidate has one signature
            chosen = all_cases()
        else:
            chosen = select(builtin_cases(), cases) if isinstance(cases, str) else list(cases)
        chosen = shard_of(chosen, part)
        lay = layout or "torch"
        _layouts_possible((c, lay) for c in chosen)
        prep = lambda i: prepare(chosen[i], chosen[i].inputs(), layout=lay)  # noqa: E731
        n = len(chosen)
    return _drive(n, prep, runner, progress=progress, shard=shard)


def check_files(golden: str | Path, grads: str | Path, pattern: str | None = None,
                progress: bool | None = None, layout: str | None = None, shard: str | None = None) -> CheckResult:
    """Judge gradient files (``<case file stem>.safetensors`` or ``.npz`` in ``grads``) against golden cases.

    ``layout``: the names and shapes of the files' tensors (as for :func:`check`).

    Files are read as data only (``oracle.files.grads.load_grads``); a hostile
    one is refused with ``GoldenFileError``. A case without a file fails,
    and the report names any file for it that is never read (``.pt``,
    ``.pkl``: pickle can run code).
    """
    from oracle.files.grads import load_grads

    _folder("golden", golden)
    _folder("grads", grads)
    if pattern is not None and not isinstance(pattern, str):
        raise BadType(f"pattern must be a substring of case names or None; got {type(pattern).__name__} "
                        f"{pattern!r}. Remedy: pattern='module/LSTM'.")
    grads = Path(grads)
    if not grads.is_dir():
        raise NothingToCheckError(f"gradient folder {str(grads)!r} is not a folder. Remedy: pass the folder "
                                  "your code wrote <case file stem>.safetensors or .npz files to.")
    if layout is not None:
        check_layout(layout)
    items = golden_cases(golden, pattern, layout, None if shard is None else parse_shard(shard))
    bar = Progress(len(items), "check", enabled=progress)
    if not items and shard is None:
        raise NothingToCheckError(f"no golden case in {str(golden)!r} matches {pattern!r}. "
                                  "Remedy: loosen -k.")
    out = CheckResult(shard=shard)
    for case, inputs, want, lay in items:
        p = prepare(case, inputs, want, lay)
        stem = grads / case.file_stem
        found = [q for q in (stem.with_suffix(".safetensors"), stem.with_suffix(".npz")) if q.exists() or
                 q.is_symlink()]
        if found:
            outcome = Outcome(grads=[load_grads(found[0], case, p.layout)])
        else:
            unread = sorted(q.name for q in grads.glob(f"{case.file_stem}.*") if q.suffix not in (".safetensors",
                                                                                                  ".npz"))
            why = f"no gradient file {stem}.safetensors or .npz"
            if unread:
                why += (f"; {', '.join(unread)} is never read (only .safetensors and .npz are: a .pt or pickle "
                        "file can run code when loaded). Remedy: save with safetensors.numpy.save_file or "
                        "numpy.savez")
            outcome = Outcome(error=why)
        out.results.append(judge(p, outcome))
        bar.step(case.name)
    return out


__all__ = ["CandidateError", "CaseResult", "CheckResult", "NothingToCheckError", "Prepared",
           "check", "check_files", "golden_cases", "judge", "prepare"]
