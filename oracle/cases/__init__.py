"""Every built-in case, of its three classes: the seed model's (``oracle.cases.seed``), the module's
(``oracle.cases.module``) and the matrix-state recurrences' (``oracle.cases.recurrence``).

The classes keep one protocol, so that nothing else asks which class a case
is: its name and seeded inputs (``name``, ``inputs``, ``cast``,
``map_arrays``), how a candidate is called (``call``: ``manual.gradients``'
signature or ``manual.module_gradients``'), its float64 truth (``truth``),
manual's and autograd's answers as judged (``manual``, ``autograd``,
``judged``), what a candidate's gradients may be (``grad_shapes``,
``expected_grads``, ``optional``, ``check_layout``, ``from_candidate``), its
golden file (``kind``, ``file_shapes``, ``file_tensors``, ``from_tensors``,
``float_tensors``, ``check_inputs``, ``from_spec``) and its finite
differences (``fd_small``, ``fd_errors``).
"""

from __future__ import annotations

from contract.errors import BadValue
from oracle.cases.module import ALL_DTYPES, ModuleCase, all_module_cases
from oracle.cases.recurrence import RecurrenceCase, all_recurrence_cases
from oracle.cases.seed import DTYPES, Case, all_cases, select

CLASSES = (ModuleCase, RecurrenceCase, Case)  # every class of case: the first whose name prefix a name has

def parse_case(name: str):
    """A case of either kind from its full name (ASCII digits; sizes bounded, so that a typo cannot ask for
    petabytes or a hundred thousand layers)."""
    if not name.isascii():
        raise BadValue(f"case name must be ASCII; got {name!r}. Remedy: e.g. "
                         "many-to-many/tanh/mse/T4-B2-D3-H4-O2/float64")
    case = next(cls for cls in CLASSES if name.startswith(cls.prefix)).parse(name)
    from oracle.files.golden import MAX_ELEMENTS, case_elements  # here: golden imports this module

    n = case_elements(case)  # (a module case's layers are bounded by its own parse)
    if n > MAX_ELEMENTS:
        raise BadValue(f"case {name!r} is too large to check here: {n:,} elements, at most {MAX_ELEMENTS:,} (a "
                       "golden file's limit). Remedy: smaller T, B or sizes (the derivation does not change with "
                       "size).")
    return case


def builtin_cases(dtypes=ALL_DTYPES) -> list:
    """The seed model's matrix (float64, float32), the module matrix, then the recurrences' (and their bfloat16 and
    float16 cases)."""
    return [*all_cases(dtypes=tuple(d for d in dtypes if d in DTYPES)), *all_module_cases(dtypes=dtypes),
            *all_recurrence_cases(dtypes=dtypes)]


__all__ = ["CLASSES", "RecurrenceCase", "builtin_cases", "parse_case", "select"]
