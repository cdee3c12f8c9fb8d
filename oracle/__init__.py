"""Where manual and reference meet: cases, comparison, reports, golden files and the ``bptt`` CLI.

    import oracle
    report = oracle.compare(got, want)          # one gradient set against the float64 truth
    result = oracle.check(my_gradients, cases="many-to-many/tanh")   # a candidate on built-in cases
"""

from oracle.cases import Case, all_cases, select
from oracle.check import CheckResult, check
from oracle.compare import Report, compare, tolerance
from oracle.truth import Truth, truth

__all__ = ["Case", "CheckResult", "Report", "Truth", "all_cases", "check", "compare", "select", "tolerance",
           "truth"]
