"""What `verify`, `check`, `fuzz` and `merge` print and write: one record per case, a summary per group.

A record is plain JSON: the case's name, its group (the cell, or ``seed
model``) and dtype, its status (``passed``, ``failed`` or ``skipped``: a
candidate's ``Unsupported``), the reason (a skip's, or a failure that left no
gradient set), the worst normalised error over its judged tensors, and per
reference (``autograd``, ``nn.LSTM``, ``candidate``) every tensor: ``judged``
(with its error, bound and verdict), ``absent-optional`` (a per-step tensor
not given: not judged) or ``skipped``. Records of shards merge by
concatenation, so a split run and the whole run print the same summary.
"""

from __future__ import annotations

from collections import Counter

from oracle.judge import Report, TensorReport

STATUS = ("passed", "skipped", "failed")
TENSOR_STATUS = {"pass": "judged", "FAIL": "judged", "not given": "absent-optional", "not needed": "skipped"}


def tensor_record(t: TensorReport) -> dict:
    """One tensor's verdict as JSON."""
    out = {"tensor": t.name, "status": TENSOR_STATUS.get(t.status, "judged"), "ok": t.ok}
    if out["status"] == "judged":
        out.update({"error": t.normalised, "bound": t.tol, "mismatched": t.mismatched, "total": t.total,
                    "first": t.first, "why": t.why})
        if t.ref_normalised is not None:
            out["autograd_error"] = t.ref_normalised
    return out


def record(case, reports: dict[str, Report], *, skipped: str = "", error: str = "") -> dict:
    """One case's record (see the module's docstring)."""
    ok = not error and not skipped and bool(reports) and all(r.ok for r in reports.values())
    status = "skipped" if skipped else "passed" if ok else "failed"
    judged = [t.normalised for r in reports.values() for t in r.tensors if TENSOR_STATUS.get(t.status) == "judged"]
    return {"name": case.name, "group": case.group, "dtype": case.dtype, "status": status,
            "reason": skipped or error, "worst": max(judged) if judged else None,
            "reports": {ref: [tensor_record(t) for t in r.tensors] for ref, r in reports.items()}}


def counts(records: list[dict]) -> str:
    """``30 cases: 24 passed, 6 skipped (unsupported: proj_size), 0 failed``."""
    by = Counter(r["status"] for r in records)
    line = f"{len(records)} case{'' if len(records) == 1 else 's'}: {by['passed']} passed"
    if by["skipped"]:
        why = Counter(r["reason"] for r in records if r["status"] == "skipped")
        said = ", ".join(w if len(why) == 1 else f"{w} ×{n}" for w, n in why.most_common(3))
        line += f", {by['skipped']} skipped (unsupported: {said}{', …' if len(why) > 3 else ''})"
    return line + f", {by['failed']} failed"


def group_table(records: list[dict]) -> str:
    """A line per group × dtype: cases, passed, skipped, failed, worst error; columns aligned."""
    groups: dict[tuple, list] = {}
    for r in sorted(records, key=lambda r: (r["group"], r["dtype"])):
        groups.setdefault((r["group"], r["dtype"]), []).append(r)
    rows = [("group", "dtype", "cases", *STATUS, "worst error")]
    for (g, dt), rs in groups.items():
        by = Counter(r["status"] for r in rs)
        worst = max((r["worst"] for r in rs if r["worst"] is not None), default=None)
        rows.append((g, dt, str(len(rs)), *(str(by[s]) for s in STATUS), "-" if worst is None else f"{worst:.1e}"))
    return aligned(rows, right_from=2)


def aligned(rows: list[tuple], right_from: int = 1) -> str:
    """Rows of strings as aligned columns: the first ``right_from`` left-aligned, the rest right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i < right_from else c.rjust(w) for i, (c, w) in
                               enumerate(zip(row, widths, strict=True))).rstrip() for row in rows)


def exit_status(records: list[dict]) -> int:
    """0 every judged case passed, 1 one failed, 2 nothing was judged (every case skipped, or none)."""
    if any(r["status"] == "failed" for r in records):
        return 1
    return 0 if any(r["status"] == "passed" for r in records) else 2


__all__ = ["aligned", "counts", "exit_status", "group_table", "record", "tensor_record"]
