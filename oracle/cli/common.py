"""What the subcommands share: exit codes, usage errors, case selection, writable targets, argument types."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports it


def device(name: str | None) -> str:
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit(usage("--device cuda: no CUDA device is present. Remedy: use --device cpu."))
    return name


def usage(msg: str) -> int:
    print(f"bptt: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def selected(args):
    from oracle.cases import builtin_cases, parse_case
    from oracle.cases.seed import DTYPES, select

    if getattr(args, "case", None):
        try:
            return [parse_case(n) for n in args.case]
        except ValueError as e:
            raise SystemExit(usage(str(e))) from None
    dtypes = DTYPES if args.dtype == "all" else (args.dtype,)
    chosen = select(builtin_cases(dtypes=dtypes), args.k)
    if not chosen:
        raise SystemExit(usage(f"-k {args.k!r} selects no case. Remedy: `bptt verify --list` shows the names."))
    return chosen


def writable_file(path: str):
    """``path`` opened for writing now, before the run, so an unwritable target is a usage error up front."""
    try:
        return open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by the caller after the run
    except OSError as e:
        raise SystemExit(usage(f"--json {path}: cannot write there ({e.strerror}). Remedy: pass a path in a "
                                "folder that exists and that you can write to.")) from None


def writable_folder(folder: Path) -> None:
    """``folder`` exists (made if need be) and takes files, checked before anything is computed."""
    import tempfile

    if folder.exists() and not folder.is_dir():
        raise SystemExit(usage(f"{folder} is a file, not a folder. Remedy: pass a folder name, e.g. golden/."))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise SystemExit(usage(f"cannot write golden files to {folder} ({e.strerror}). Remedy: pass a folder "
                                "you can write to.")) from None


def jobs(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value!r} (e.g. --jobs 2)")
    return n


def seconds(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = float("nan")
    if not 0 < x < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds; got {value!r} (e.g. --timeout 60)")
    return x


def selection(sp) -> None:
    """-k, --dtype and --case: which cases a subcommand takes."""
    sp.add_argument("-k", metavar="SUBSTRING", help="only cases whose name contains SUBSTRING")
    sp.add_argument("--dtype", choices=("float64", "float32", "all"), default="all")
    sp.add_argument("--case", action="append", metavar="NAME",
                    help="a case by full name, built-in or not (repeatable), e.g. "
                         "many-to-many/tanh/mse/T4-B2-D3-H4-O2/float64")

