"""`bptt export`: golden cases, each written only after manual, autograd and finite differences agree."""

from __future__ import annotations

import math
from pathlib import Path

import manual
from contract.spec import param_shapes
from oracle.cases import Case, run
from oracle.catalog import kind_of
from oracle.compare import BOUND, COND_FACTOR, EPS, MAX_TOL, REF_FACTOR, C
from oracle.fd import FD_TOL, fd_errors, module_fd_errors
from oracle.golden import environment, write_golden
from oracle.layouts import LayoutError, check_layout
from oracle.module_cases import ModuleCase, module_truth, run_module, to_time_major
from oracle.progress import Progress
from oracle.truth import as_float64, truth

FD_MAX_PARAMS = 400  # finite differences on cases this small (two losses per entry)


def small(case: Case) -> bool:
    T, B, D, H, O = case.T, case.B, case.D, case.H, case.O
    n = H * D + H * H + H + O * H + O + B * H + T * B * D  # entries differenced
    return n <= FD_MAX_PARAMS and case.T <= 17


def small_module(case: ModuleCase) -> bool:
    n = sum(math.prod(s) for s in param_shapes(case.config).values()) + 2 * case.T * case.B * case.I
    return n <= FD_MAX_PARAMS and case.T <= 17


def export(folder: Path, cases: list, layout: str = "torch") -> tuple[int, list[str], list[str]]:
    """Write one golden file per case that passes the gates, module cases in ``layout`` (``oracle.layouts``);
    return (written, refusals, skipped): skipped are the module cases with no form in ``layout``."""
    check_layout(layout)
    skipped = []
    if layout != "torch":
        keep = []
        for case in cases:
            try:
                check_layout(layout, case.config if kind_of(case) == "module" else None)
                keep.append(case)
            except LayoutError as e:
                skipped.append(f"{case.name}: not written: {e}")
        cases = keep
    folder.mkdir(parents=True, exist_ok=True)
    env = environment()
    policy = {"bound": BOUND,
              "C": C, "eps": EPS, "COND_FACTOR": COND_FACTOR, "REF_FACTOR": REF_FACTOR, "MAX_TOL": MAX_TOL}
    written, refused = 0, []
    bar = Progress(len(cases), "export")
    for case in cases:
        if kind_of(case) == "module":
            inputs = case.inputs("float64")  # the case's numbers, rounded to its dtype, in float64
            want = module_truth(inputs)
            got = to_time_major(case, run_module(manual.module_gradients, inputs))
            report = want.compare(got, title=f"{case.name}: manual vs autograd")
            fd = module_fd_errors(to_time_major(case, want.grads), inputs) if small_module(case) else {}
            checked = "manual.module_gradients float64"
        else:
            inputs = as_float64(case.inputs())  # the case's numbers, rounded to its dtype, in float64
            want = truth(inputs, case.kwargs)
            report = want.compare(run(manual.gradients, inputs, case.kwargs), title=f"{case.name}: manual vs autograd")
            fd = fd_errors(want.grads, inputs, case.kwargs) if small(case) else {}
            checked = "manual.gradients float64"
        bad_fd = {k: e for k, e in fd.items() if not e <= FD_TOL}
        if not report.ok or bad_fd:
            refused.append(f"{case.name}: not written: " + (str(report) if not report.ok else
                                                             f"finite differences disagree {bad_fd}"))
        else:
            extra = {"tolerance": policy, "versions": env, "device": "cpu", "truth": "torch.autograd float64",
                     "checked": [checked] + (["finite differences"] if fd else [])}
            write_golden(folder / f"{case.file_stem}.safetensors", case, inputs, want, extra,
                         layout if kind_of(case) == "module" else "torch")
            written += 1
        bar.step(case.name)
    return written, refused, skipped
