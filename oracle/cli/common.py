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
    """The built-in cases (or ``--case`` names) that -k, --dtype and --shard pick."""
    from oracle.cases import builtin_cases, parse_case
    from oracle.cases.module import ALL_DTYPES
    from oracle.cases.select import select, shard_of

    if getattr(args, "case", None) and args.k:
        raise SystemExit(usage("-k and --case both select cases: give one. Remedy: -k EXPRESSION, or --case NAME "
                               "(repeatable)."))
    try:
        if getattr(args, "case", None):
            chosen = [parse_case(n) for n in args.case]
        else:
            dtypes = ALL_DTYPES if args.dtype == "all" else (args.dtype,)
            chosen = select(builtin_cases(dtypes=dtypes), args.k)
    except ValueError as e:
        raise SystemExit(usage(str(e))) from None
    if not chosen:
        raise SystemExit(usage(f"-k {args.k!r} selects no case. Remedy: `bptt verify --list` shows the names."))
    return shard_of(chosen, args.shard)


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


def positive(example: str):
    """An argparse type: a positive integer, its error naming ``example`` (``--jobs 2``)."""
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise argparse.ArgumentTypeError(f"must be a positive integer; got {value!r} (e.g. {example})")
        return n
    return parse


jobs = positive("--jobs 2")


def runs_a_candidate(args) -> int | None:
    """What `check` and `fuzz` do first: the candidate's module importable from the folder the command runs in,
    and --num-gpus only with --ray; the usage error's exit code, or None."""
    sys.path.insert(0, str(Path.cwd()))
    if args.num_gpus and args.ray is None:
        return usage(f"--num-gpus {args.num_gpus:g} reserves GPUs for Ray tasks. Remedy: add --ray [ADDRESS], or "
                     "leave --num-gpus out (a local worker sees every GPU of the machine).")
    return None


def seconds(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = float("nan")
    if not 0 < x < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds; got {value!r} (e.g. --timeout 60)")
    return x


class Once(argparse.Action):
    """An option given at most once: a second -k would silently replace the first."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"{option_string} given twice ({getattr(namespace, self.dest)!r}, then {values!r}); a "
                         f"second would replace the first. Remedy: one expression, e.g. {option_string} "
                         f"\"{getattr(namespace, self.dest)} and {values}\"")
        setattr(namespace, self.dest, values)


def shard(value: str) -> tuple[int, int]:
    from oracle.cases.select import parse_shard

    try:
        return parse_shard(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def narrowing(sp) -> None:
    """-k and --shard: the expression over case names, and one part of a split run."""
    sp.add_argument("-k", metavar="EXPRESSION", action=Once,
                    help="only cases the expression selects: words of the name (split at / and -) with and, or, "
                         "not, parentheses, e.g. \"LSTM and L1 and not bi\"; a word no name has as a part "
                         "matches as a substring")
    sp.add_argument("--shard", type=shard, metavar="i/N",
                    help="only the i-th of N stable parts of the selection (split by case name); "
                         "`bptt merge` combines the parts' --json reports")


def setup(args, *keys: str) -> dict:
    """What a run was asked (for its --json): `bptt merge` refuses shards of runs that were asked different
    things."""
    return {k: getattr(args, k, None) for k in keys}


def shard_text(args) -> str | None:
    return None if args.shard is None else f"{args.shard[0]}/{args.shard[1]}"


def selection(sp) -> None:
    """-k, --shard, --dtype and --case: which cases a subcommand takes."""
    narrowing(sp)
    sp.add_argument("--dtype", choices=("float64", "float32", "bfloat16", "float16", "all"), default="all",
                    help="only cases of this dtype (bfloat16 and float16: module cases only)")
    sp.add_argument("--case", action="append", metavar="NAME",
                    help="a case by full name, built-in or not (repeatable), e.g. "
                         "many-to-many/tanh/mse/T4-B2-D3-H4-O2/float64")

