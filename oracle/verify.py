"""`bptt verify`: manual against autograd and torch.nn.RNN on the built-in cases."""

from __future__ import annotations

import functools
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

import manual
import reference
from contract import GRAD_NAMES
from contract.cells import CELLS
from contract.errors import BadType, BadValue
from contract.spec import TORCH_MODULE
from oracle.cases.module import ModuleCase, module_truth, run_module, to_time_major
from oracle.cases.recurrence import RecurrenceCase, run_recurrence
from oracle.cases.seed import Case, run
from oracle.checker.isolate import default_jobs
from oracle.groundtruth import Truth, truth
from oracle.judge import to_numpy
from oracle.precision import LOW
from oracle.progress import Progress
from oracle.summary import record


@contextmanager
def tf32(allowed: bool):
    """TF32 off for the duration (unless allowed): it breaks float32 parity for reasons unrelated to BPTT."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def on_device(case, inputs: dict, device: str) -> dict:
    """NumPy inputs on the CPU; torch tensors on CUDA (every array of the case's, integer targets included)."""
    if device == "cpu":
        return inputs
    return type(case).map_arrays(lambda a: torch.from_numpy(a).to(device), inputs, every=True)


@dataclass
class CaseVerdict:
    case: Case
    reports: dict  # "autograd" / "nn.RNN" → Report of manual against that reference

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports.values())

    def worst(self, name: str) -> float | None:
        errs = [t.normalised for r in self.reports.values() for t in r.tensors if t.name == name]
        return max(errs) if errs else None

    def record(self) -> dict:
        """This case as JSON (``oracle.summary.record``)."""
        return record(self.case, self.reports)


@dataclass
class Verification:
    verdicts: list[CaseVerdict] = field(default_factory=list)
    device: str = "cpu"
    tf32: bool = False
    seconds: float = 0.0
    shard: str | None = None  # "i/N" when this run is one shard of a split selection

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)

    @property
    def tensors(self) -> int:
        return sum(len(r.tensors) for v in self.verdicts for r in v.reports.values())

    def worst(self, dtype: str) -> float:
        return max((r.worst for v in self.verdicts if v.case.dtype == dtype for r in v.reports.values()),
                   default=0.0)

    def table(self) -> str:
        """One table per class of case (the seed model's, the module's), each in its own columns."""
        tables = {Case: self._seed_table, ModuleCase: self._module_table, RecurrenceCase: self._recurrence_table}
        return "\n\n".join(t for kind, table in tables.items()
                           if (t := table([v for v in self.verdicts if type(v.case) is kind])))

    def _module_table(self, verdicts) -> str:
        """One row per module case; each column the worst over layers and directions."""
        if not verdicts:
            return ""
        groups = {"weight_ih": "weight_ih_l", "weight_hh": "weight_hh_l", "bias": "bias_", "input": "input",
                  "hx": "hx", "cx": "cx", "h": "h_l", "c": "c_l",  # every other per-step kind: the cells' rows
                  "z/gates": tuple(f"{k}_l" for c in CELLS.values() for k in c.step_kinds if k not in c.states)}
        width = max([70, *(len(v.case.name) + 1 for v in verdicts)])
        head = f"{'module case':<{width}}" + "".join(f"{n:>10}" for n in groups) + "  verdict"
        rows = [head, "-" * len(head)]
        for v in verdicts:
            cells = []
            for prefix in groups.values():
                pre = prefix if isinstance(prefix, tuple) else (prefix,)
                ts = [t for r in v.reports.values() for t in r.tensors
                      if t.name in pre or any(p.endswith(("_l", "_")) and t.name.startswith(p) for p in pre)]
                w = max((t.normalised for t in ts), default=None)
                cells.append(f"{'-' if w is None else f'{w:.1e}':>9}{'!' if any(not t.ok for t in ts) else ' '}")
            rows.append(f"{v.case.name:<{width}}" + "".join(cells) + ("  ok" if v.ok else "  FAIL"))
        return "\n".join(rows)

    def _seed_table(self, verdicts) -> str:
        return _named_table(verdicts, "case", GRAD_NAMES, 58)

    def _recurrence_table(self, verdicts) -> str:
        return _named_table(verdicts, "recurrence case", ("q", "k", "v", "g", "beta", "initial_state", "S"), 80)

    def summary(self) -> str:
        fails = sum(not v.ok for v in self.verdicts)
        worst = ", ".join(f"{d} {self.worst(d):.1e}" for d in ("float64", "float32", *LOW)
                          if any(v.case.dtype == d for v in self.verdicts))
        return (f"{'PASS' if self.ok else 'FAIL'}: {len(self.verdicts)} cases, {self.tensors} tensor comparisons, "
                f"{fails} failed; worst normalised error {worst or '-'}; device {self.device}, "
                f"TF32 {'on' if self.tf32 else 'off'}; {self.seconds:.1f} s")

    def records(self) -> list[dict]:
        return [v.record() for v in self.verdicts]

    def to_json(self) -> dict:
        return {"command": "verify", "ok": self.ok, "device": self.device, "tf32": self.tf32,
                "seconds": self.seconds, "shard": self.shard, "cases": self.records()}


def _named_table(verdicts, title: str, names: tuple, width: int) -> str:
    """One row per case, one column per gradient (its worst normalised error, ``!`` where it failed)."""
    if not verdicts:
        return ""
    width = max([width, *(len(v.case.name) + 1 for v in verdicts)])
    head = f"{title:<{width}}" + "".join(f"{n[:8]:>9}" for n in names) + "  verdict"
    rows = [head, "-" * len(head)]
    for v in verdicts:
        cells = []
        for n in names:
            w = v.worst(n)
            failed = any(not t.ok for r in v.reports.values() for t in r.tensors if t.name == n)
            cells.append(f"{'-' if w is None else f'{w:.1e}':>8}{'!' if failed else ' '}")
        rows.append(f"{v.case.name:<{width}}" + "".join(cells) + ("  ok" if v.ok else "  FAIL"))
    return "\n".join(rows)


@functools.singledispatch
def verify_case(case, device: str = "cpu") -> CaseVerdict:
    """Manual against autograd and torch's own module on one case (dispatched by the case's class)."""
    raise BadType(f"case must be a built-in case (oracle.Case, ModuleCase, RecurrenceCase); got {type(case).__name__}. "
                    "Remedy: pick cases from oracle.cases.builtin_cases().")


@verify_case.register
def verify_module_case(case: ModuleCase, device: str = "cpu") -> CaseVerdict:
    """manual.module_gradients against unrolled autograd (every tensor) and torch.nn.RNN (its tensors)."""
    want = module_truth(case.inputs("float64"))
    here = case.in_dtype(case.inputs(), device)  # NumPy on the CPU; torch on CUDA, and in bfloat16 and float16
    got = to_time_major(case, to_numpy_all(run_module(manual.module_gradients, here)))
    low = case.dtype != "float64"
    ref = to_time_major(case, to_numpy_all(run_module(reference.unrolled_module_gradients, here))) if low else None
    reports = {"autograd": want.compare(got, dtype=case.dtype, ref=ref, title=f"{case.name} vs autograd")}
    if not case.config.has_torch_module or case.dtype in LOW:  # the GRU's paper form: torch has no module for
        return CaseVerdict(case, reports)  # it; in low precision autograd is the rule's reference (oracle.policy)
    nn = to_time_major(case, to_numpy_all(run_module(reference.nn_module_gradients, case.inputs("float64"))))
    nn_ref = to_time_major(case, to_numpy_all(run_module(reference.nn_module_gradients, here))) if low else None
    nn_truth = Truth({**want.grads, **nn}, want.sens, want.amp, want.steps, want.size)
    label = f"nn.{TORCH_MODULE[case.mode]}"  # torch's own module: nn.RNN, nn.LSTM or nn.GRU
    reports[label] = nn_truth.compare(got, dtype=case.dtype, ref=None if nn_ref is None else {**ref, **nn_ref},
                                      title=f"{case.name} vs {label}")
    return CaseVerdict(case, reports)


@verify_case.register
def verify_recurrence_case(case: RecurrenceCase, device: str = "cpu") -> CaseVerdict:
    """manual.recurrence_gradients against unrolled autograd (every tensor; no torch module computes these)."""
    want = case.truth(case.inputs("float64"))
    here = case.in_dtype(case.inputs(), device)  # NumPy on the CPU; torch on CUDA, and in bfloat16 and float16
    got = case.judged(to_numpy_all(run_recurrence(manual.recurrence_gradients, here, None)))
    ref = case.judged(to_numpy_all(run_recurrence(reference.unrolled_recurrence_gradients, here, None))) \
        if case.dtype != "float64" else None
    return CaseVerdict(case, {"autograd": want.compare(got, dtype=case.dtype, ref=ref,
                                                       title=f"{case.name} vs autograd")})


def to_numpy_all(g: dict) -> dict:
    """Every tensor as NumPy (bfloat16 widened to float64, exactly)."""
    return {k: to_numpy(v) if hasattr(v, "detach") else v for k, v in g.items()}


@verify_case.register
def verify_seed_case(case: Case, device: str = "cpu") -> CaseVerdict:
    """manual.gradients against autograd (every tensor) and torch.nn.RNN where it has the activation."""
    inputs = case.inputs()
    want = truth(inputs, case.kwargs)
    here = on_device(case, case.cast(inputs), device)
    got = run(manual.gradients, here, case.kwargs)
    low = case.dtype != "float64"  # judged next to the reference's own error in that dtype
    ref = run(reference.gradients, here, case.kwargs) if low else None
    reports = {"autograd": want.compare(got, dtype=case.dtype, ref=ref, title=f"{case.name} vs autograd")}
    if case.activation in reference.NN_RNN_ACTIVATIONS:
        nn64 = run(reference.nn_rnn_gradients, inputs, case.kwargs)
        nn_truth = Truth({**want.grads, **nn64}, want.sens, want.amp)  # h, z: nn.RNN does not give them
        nn_ref = run(reference.nn_rnn_gradients, here, case.kwargs) if low else None
        reports["nn.RNN"] = nn_truth.compare(got, dtype=case.dtype, ref=None if nn_ref is None else {**ref, **nn_ref},
                                             title=f"{case.name} vs nn.RNN")
    return CaseVerdict(case, reports)


def _verify_in_worker(case: Case, device: str, allow_tf32: bool) -> CaseVerdict:
    with tf32(allow_tf32):
        return verify_case(case, device)


def _one_thread() -> None:
    torch.set_num_threads(1)  # the workers share the cores; the built-in cases are too small to split


def verify(cases: list[Case], device: str = "cpu", allow_tf32: bool = False,
           progress: bool | None = None, jobs: int | None = None) -> Verification:
    """Manual against autograd (and nn.RNN) on ``cases``; ``jobs`` worker processes (default: the cores on
    the CPU, 1 on CUDA; 1 runs in this process)."""
    if not cases:
        raise BadValue("cases is empty: nothing to verify. Remedy: oracle.all_cases(), or loosen the selection.")
    if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
        raise BadValue(f"jobs must be a positive integer or None; got {jobs!r}. Remedy: jobs=1.")
    jobs = min(jobs or (default_jobs() if device == "cpu" else 1), len(cases))
    out = Verification(device=device, tf32=allow_tf32 and device != "cpu")
    start = time.perf_counter()
    bar = Progress(len(cases), "verify", enabled=progress)
    if jobs == 1:
        with tf32(allow_tf32):
            for case in cases:
                out.verdicts.append(verify_case(case, device))
                bar.step(case.name)
    else:  # our own code only (no candidate), so a plain pool; spawn: no fork of a process that holds torch
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_one_thread) as pool:
            futures = [pool.submit(_verify_in_worker, c, device, allow_tf32) for c in cases]
            for f in as_completed(futures):
                bar.step(f.result().case.name)
            out.verdicts = [f.result() for f in futures]
    out.seconds = time.perf_counter() - start
    return out


def failures_text(v: Verification) -> str:
    return "\n".join(str(r) for cv in v.verdicts for r in cv.reports.values() if not r.ok)


__all__ = ["Verification", "failures_text", "verify", "verify_case"]
