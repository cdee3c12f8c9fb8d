"""Where manual and reference meet: cases, comparison, reports, golden files and the ``bptt`` CLI.

    import oracle
    report = oracle.compare(got, want)          # one gradient set against the float64 truth
    result = oracle.check(my_gradients, cases="many-to-many/tanh")   # a candidate on built-in cases

Importing ``oracle`` does not import torch (``reference`` is imported where it
is used), so a worker process that runs a candidate (``oracle.isolate``)
starts in a fraction of a second.
"""

from oracle.cases import Case, all_cases, select
from oracle.check import CheckResult, NothingToCheckError, check, check_files
from oracle.compare import Report, compare, tolerance
from oracle.isolate import CandidateError
from oracle.truth import Truth, truth

__all__ = ["CandidateError", "Case", "CheckResult", "NothingToCheckError", "Report", "Truth", "all_cases", "check",
           "check_files", "compare", "select", "tolerance", "truth"]
