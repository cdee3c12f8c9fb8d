"""`bptt check`: a candidate's gradients (a function, or files) judged on golden cases."""

from __future__ import annotations

import sys

from oracle.checker.isolate import DEFAULT_TIMEOUT
from oracle.cli.common import (
    EXIT_OK,
    jobs,
    narrowing,
    runs_a_candidate,
    seconds,
    setup,
    shard_text,
    usage,
    writable_file,
)


def add(sub) -> None:
    """The `bptt check` subcommand's arguments."""
    c = sub.add_parser("check", help="check a candidate's gradients against golden cases or built-in ones")
    c.add_argument("dir", nargs="?", help="folder of golden cases from `bptt export` (default: the built-in cases, "
                                          "or those named by --case)")
    c.add_argument("--case", action="append", metavar="NAME",
                   help="a case by full name (repeatable): without DIR any case, e.g. one `bptt fuzz` printed; "
                        "with DIR that case of the folder")
    who = c.add_mutually_exclusive_group()
    who.add_argument("--candidate", metavar="MODULE:FUNCTION",
                     help="a function with manual.gradients' signature (seed-model cases), "
                          "manual.module_gradients' (module cases) or manual.recurrence_gradients' (recurrence "
                          "cases); it may raise oracle.Unsupported")
    who.add_argument("--grads", metavar="DIR2", help="folder of <case>.safetensors or .npz gradient files")
    narrowing(c)
    c.add_argument("--list", action="store_true", help="list the selected case names and exit")
    c.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"per case, for the candidate's calls (default {DEFAULT_TIMEOUT:g}); past it the case fails")
    c.add_argument("--jobs", type=jobs, metavar="N",
                   help="worker processes running the candidate (default: the cores)")
    c.add_argument("--layout", choices=("torch", "onnx"),
                   help="the layout the candidate's module gradients come in (default: each golden file's own)")
    where = c.add_mutually_exclusive_group()
    where.add_argument("--in-process", action="store_true",
                       help="run the candidate in this process (for a debugger): no isolation, no timeout")
    where.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                       help="each case a Ray task (the ray extra): a local instance, or the cluster at ADDRESS")
    c.add_argument("--num-gpus", type=float, default=0, metavar="G", help="GPUs per Ray task (with --ray)")
    c.add_argument("--json", metavar="PATH", help="write the results as JSON (per case, per tensor)")
    talk = c.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="every case's per-tensor report (optional tensors not given listed) and the workers' "
                           "output")
    talk.add_argument("-q", "--quiet", action="store_true", help="failures and the last line only")
    c.set_defaults(fn=cmd_check)


def cmd_check(args) -> int:
    from oracle.checker.candidate import CandidateError
    from oracle.checker.run import NothingToCheckError, check, check_files
    from oracle.files.readers import GoldenFileError

    refused = runs_a_candidate(args)
    if refused is not None:
        return refused
    if not args.list and not (args.candidate or args.grads):
        return usage("check needs --candidate MODULE:FUNCTION or --grads DIR2. Remedy: e.g. "
                     f"`bptt check {args.dir or 'golden/'} --candidate mykernel:gradients`.")
    if args.dir is None and args.grads:
        return usage("--grads reads the golden cases of a folder: give it. Remedy: `bptt check DIR --grads DIR2`.")
    if args.k and args.case:
        return usage("-k and --case both select cases: give one. Remedy: -k EXPRESSION, or --case NAME (repeatable).")
    out = None
    try:
        if args.dir is not None and args.case:  # those names among the folder's cases
            args.k = " or ".join(args.case)  # a full name is no part of a name: it matches as a substring
        cases = args.k if args.dir or not args.case else [_parse(n) for n in args.case]
        if args.list:
            names = _names(args, cases)
            if names:  # (an empty selection lists nothing)
                print("\n".join(names))
            return EXIT_OK
        out = writable_file(args.json) if args.json else None
        if args.grads:
            result = check_files(args.dir, args.grads, args.k, layout=args.layout, shard=shard_text(args))
        else:
            result = check(args.candidate, cases, golden=args.dir, jobs=args.jobs, timeout=args.timeout,
                           isolate=not args.in_process, layout=args.layout, shard=shard_text(args),
                           ray=args.ray, num_gpus=args.num_gpus)
    except (NothingToCheckError, GoldenFileError, CandidateError, ValueError) as e:  # LayoutError is one
        if out:
            out.close()
        return usage(str(e))
    return report(result, args, out)


def _parse(name: str):
    from oracle.cases import parse_case

    return parse_case(name)


def _names(args, cases) -> list[str]:
    """What --list shows: the golden folder's selection, or the built-in or named cases'."""
    from oracle.cases import builtin_cases
    from oracle.cases.select import select, shard_of
    from oracle.checker.run import golden_names

    if args.dir is not None:
        return golden_names(args.dir, args.k, args.shard)
    chosen = cases if isinstance(cases, list) else select(builtin_cases(), cases)
    return [c.name for c in shard_of(chosen, args.shard)]


def report(result, args, out) -> int:
    """Print the result, write its JSON, and give the exit status."""
    show(result, args.verbose, args.quiet)
    if out:
        import json

        doc = {**result.to_json(), "setup": setup(args, "candidate", "k", "case", "layout")}
        with out:
            out.write(json.dumps(doc, indent=1))
    return result.exit_status


def show(result, verbose: bool, quiet: bool) -> None:
    """Failing reports (every one with -v), the workers' output when a case failed (or -v), the summary."""
    reports = result.reports(verbose)
    if reports:
        print(reports)
    if result.output and (verbose or result.failures):
        sys.stdout.flush()
        print(result.output, file=sys.stderr, end="" if result.output.endswith("\n") else "\n")
        sys.stderr.flush()
    print(result.closing(quiet))
