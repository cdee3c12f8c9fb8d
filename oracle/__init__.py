"""Where manual and reference meet: cases, comparison, reports, golden files and the ``bptt`` CLI.

Rooms by concern: ``cases`` (the case protocol and the built-in catalogues),
``files`` (the hardened readers, golden files, candidates' gradient files,
export), ``checker`` (running and judging a candidate), ``cli`` (one module
per subcommand), beside ``policy`` (every tolerance), ``judge`` (comparison
and reports), ``groundtruth`` (the float64 truth), ``layouts``, ``fd``,
``verify`` and ``derive``.

    import oracle
    report = oracle.compare(got, want)          # one gradient set against the float64 truth
    result = oracle.check(my_gradients, cases="many-to-many/tanh")   # a candidate on built-in cases
    oracle.assert_gradients(my_lstm, "module/LSTM/L1/T5-B3-I3-H4/lengths-full/up-both/float64")  # in a test

Importing ``oracle`` does not import torch (``reference`` is imported where it
is used), so a worker process that runs a candidate (``oracle.checker.isolate``)
starts in a fraction of a second.
"""

from oracle.assertions import assert_gradients
from oracle.cases.module import ModuleCase
from oracle.cases.recurrence import RecurrenceCase
from oracle.cases.seed import Case, all_cases, select
from oracle.checker.candidate import CandidateError, Unsupported
from oracle.checker.run import CheckResult, NothingToCheckError, check, check_files
from oracle.files.readers import GoldenFileError
from oracle.fuzzing import fuzz
from oracle.groundtruth import Truth, truth
from oracle.judge import Report, compare, tolerance

__all__ = ["CandidateError", "Case", "CheckResult", "GoldenFileError", "ModuleCase", "NothingToCheckError",
           "RecurrenceCase", "Report", "Truth", "Unsupported", "all_cases", "assert_gradients", "check",
           "check_files", "compare", "fuzz", "select", "tolerance", "truth"]
