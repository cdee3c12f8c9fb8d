"""`bptt check`: a candidate's gradients (a function, or files) judged on golden cases."""

from __future__ import annotations

import sys
from pathlib import Path

from oracle.checker.isolate import DEFAULT_TIMEOUT
from oracle.cli.common import EXIT_MISMATCH, EXIT_OK, jobs, seconds, usage


def add(sub) -> None:
    """The `bptt check` subcommand's arguments."""
    c = sub.add_parser("check", help="check a candidate's gradients against golden cases")
    c.add_argument("dir", help="folder of golden cases from `bptt export`")
    who = c.add_mutually_exclusive_group(required=True)
    who.add_argument("--candidate", metavar="MODULE:FUNCTION", help="a function with manual.gradients' signature")
    who.add_argument("--grads", metavar="DIR2", help="folder of <case>.safetensors or .npz gradient files")
    c.add_argument("-k", metavar="SUBSTRING", help="only cases whose name contains SUBSTRING")
    c.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"per case, for the candidate's calls (default {DEFAULT_TIMEOUT:g}); past it the case fails")
    c.add_argument("--jobs", type=jobs, metavar="N",
                   help="worker processes running the candidate (default: the cores)")
    c.add_argument("--layout", choices=("torch", "onnx"),
                   help="the layout the candidate's module gradients come in (default: each golden file's own)")
    c.add_argument("--in-process", action="store_true",
                   help="run the candidate in this process (for a debugger): no isolation, no timeout")
    c.set_defaults(fn=cmd_check)


def cmd_check(args) -> int:
    from oracle.checker.candidate import CandidateError
    from oracle.checker.run import NothingToCheckError, check, check_files
    from oracle.files.readers import GoldenFileError
    from oracle.layouts import LayoutError

    sys.path.insert(0, str(Path.cwd()))  # the candidate's module, from the folder the command runs in
    try:
        if args.candidate:
            result = check(args.candidate, args.k, golden=args.dir, jobs=args.jobs, timeout=args.timeout,
                           isolate=not args.in_process, layout=args.layout)
        else:
            result = check_files(args.dir, args.grads, args.k, layout=args.layout)
    except (NothingToCheckError, GoldenFileError, CandidateError, LayoutError) as e:
        return usage(str(e))
    print(result)
    return EXIT_OK if result.ok else EXIT_MISMATCH


