"""`bptt export`: golden cases, each written only after manual, autograd and finite differences agree."""

from __future__ import annotations

from pathlib import Path

from oracle.files.golden import environment, write_golden
from oracle.layouts import LayoutError, check_layout
from oracle.policy import BOUND, COND_FACTOR, EPS, FD_TOL, LOW_CAP, LOW_FACTOR, LOW_FLOOR, MAX_TOL, REF_FACTOR, C
from oracle.progress import Progress


def export(folder: Path, cases: list, layout: str = "torch") -> tuple[int, list[str], list[str]]:
    """Write one golden file per case that passes the gates, module cases in ``layout`` (``oracle.layouts``);
    return (written, refusals, skipped): skipped are the module cases with no form in ``layout``."""
    check_layout(layout)
    skipped = []
    if layout != "torch":
        keep = []
        for case in cases:
            try:
                case.check_layout(layout)
                keep.append(case)
            except LayoutError as e:
                skipped.append(f"{case.name}: not written: {e}")
        cases = keep
    folder.mkdir(parents=True, exist_ok=True)
    env = environment()
    policy = {"bound": BOUND,
              "C": C, "eps": EPS, "COND_FACTOR": COND_FACTOR, "REF_FACTOR": REF_FACTOR, "MAX_TOL": MAX_TOL,
              "LOW_FACTOR": LOW_FACTOR, "LOW_FLOOR": LOW_FLOOR, "LOW_CAP": LOW_CAP}
    written, refused = 0, []
    bar = Progress(len(cases), "export")
    for case in cases:
        inputs = case.cast(case.inputs(), "float64")  # the case's numbers, rounded to its dtype, in float64
        want = case.truth(inputs)
        report = want.compare(case.manual(inputs), title=f"{case.name}: manual vs autograd")
        fd = case.fd_errors(want.grads, inputs) if case.fd_small() else {}
        checked = f"{case.manual_name} float64"
        bad_fd = {k: e for k, e in fd.items() if not e <= FD_TOL}
        if not report.ok or bad_fd:
            refused.append(f"{case.name}: not written: " + (str(report) if not report.ok else
                                                             f"finite differences disagree {bad_fd}"))
        else:
            extra = {"tolerance": policy, "versions": env, "device": "cpu", "truth": "torch.autograd float64",
                     "checked": [checked] + (["finite differences"] if fd else [])}
            write_golden(folder / f"{case.file_stem}.safetensors", case, inputs, want, extra,
                         case.check_layout(layout))
            written += 1
        bar.step(case.name)
    return written, refused, skipped
