"""Where manual and reference meet: cases, comparison, reports, golden files and the ``bptt`` CLI.

    import oracle
    report = oracle.compare(got, want)          # one gradient set against the float64 truth
    result = oracle.check(my_gradients, cases="many-to-many/tanh")   # a candidate on built-in cases

The names below are imported on first use, so that a worker process that
runs a candidate (``oracle.isolate``) starts without importing torch.
"""

from importlib import import_module

_WHERE = {"Case": "oracle.cases", "all_cases": "oracle.cases", "select": "oracle.cases",
          "CheckResult": "oracle.check", "check": "oracle.check", "NothingToCheckError": "oracle.check",
          "CandidateError": "oracle.isolate", "Report": "oracle.compare", "compare": "oracle.compare",
          "tolerance": "oracle.compare", "Truth": "oracle.truth", "truth": "oracle.truth"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'oracle' has no attribute {name!r}")
