"""The `bptt` command. Exit codes: 0 success, 1 a gradient mismatch, 2 bad usage or input."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports it


def _device(name: str | None) -> str:
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit(_usage("--device cuda: no CUDA device is present. Remedy: use --device cpu."))
    return name


def _usage(msg: str) -> int:
    print(f"bptt: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _cases(args):
    from oracle.cases import DTYPES, select
    from oracle.catalog import builtin_cases, parse_case

    if getattr(args, "case", None):
        try:
            return [parse_case(n) for n in args.case]
        except ValueError as e:
            raise SystemExit(_usage(str(e))) from None
    dtypes = DTYPES if args.dtype == "all" else (args.dtype,)
    chosen = select(builtin_cases(dtypes=dtypes), args.k)
    if not chosen:
        raise SystemExit(_usage(f"-k {args.k!r} selects no case. Remedy: `bptt verify --list` shows the names."))
    return chosen


def _writable_file(path: str):
    """``path`` opened for writing now, before the run, so an unwritable target is a usage error up front."""
    try:
        return open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by the caller after the run
    except OSError as e:
        raise SystemExit(_usage(f"--json {path}: cannot write there ({e.strerror}). Remedy: pass a path in a "
                                "folder that exists and that you can write to.")) from None


def _writable_folder(folder: Path) -> None:
    """``folder`` exists (made if need be) and takes files, checked before anything is computed."""
    import tempfile

    if folder.exists() and not folder.is_dir():
        raise SystemExit(_usage(f"{folder} is a file, not a folder. Remedy: pass a folder name, e.g. golden/."))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise SystemExit(_usage(f"cannot write golden files to {folder} ({e.strerror}). Remedy: pass a folder "
                                "you can write to.")) from None


def _jobs(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value!r} (e.g. --jobs 2)")
    return n


def _seconds(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = float("nan")
    if not 0 < x < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds; got {value!r} (e.g. --timeout 60)")
    return x


def cmd_verify(args) -> int:
    from oracle.verify import failures_text, verify

    cases = _cases(args)
    if args.list:
        print("\n".join(c.name for c in cases))
        return EXIT_OK
    device = _device(args.device)
    out = _writable_file(args.json) if args.json else None
    try:
        v = verify(cases, device=device, allow_tf32=args.allow_tf32, jobs=args.jobs)
        if not args.quiet:
            print(v.table())
        if not v.ok:
            print(failures_text(v))
        print(v.summary())
        if out:
            out.write(json.dumps(v.to_json(), indent=1))
    finally:
        if out:
            out.close()
    return EXIT_OK if v.ok else EXIT_MISMATCH


def cmd_derive(args) -> int:
    from oracle.derive import lines

    args.steps_given = args.steps is not None
    args.steps = 2 if args.steps is None else args.steps
    if args.steps < 1:
        return _usage(f"--steps must be at least 1; got {args.steps}. Remedy: --steps 2 is the notes' example.")
    if args.seed < 0:
        return _usage(f"--seed must be a non-negative integer; got {args.seed}. Remedy: --seed 0.")
    if args.cell != "elman":
        from oracle.derive_cells import cell_lines

        out, ok = cell_lines(args.cell, args.steps if args.steps_given else 3, args.seed)
        print("\n".join(out))
        return EXIT_OK if ok else EXIT_MISMATCH
    out, ok = lines(args.steps, args.activation, args.seed)
    print("\n".join(out))
    return EXIT_OK if ok else EXIT_MISMATCH


def cmd_export(args) -> int:
    from oracle.export import export

    folder = Path(args.dir)
    cases = _cases(args)
    _writable_folder(folder)
    try:
        written, refused, skipped = export(folder, cases, args.layout)
    except OSError as e:
        return _usage(f"writing to {folder} failed ({e.strerror}). Remedy: free space or pass another folder.")
    for msg in refused + skipped:
        print(msg, file=sys.stderr)
    if not written and not refused:
        return _usage(f"none of the {len(skipped)} selected case(s) has a form in the {args.layout} layout. "
                      "Remedy: --layout torch, or select other cases with -k.")
    print(f"wrote {written} golden case(s) to {args.dir} in the {args.layout} layout; refused {len(refused)}"
          + (f"; skipped {len(skipped)} with no {args.layout} form" if skipped else ""))
    return EXIT_OK if not refused else EXIT_MISMATCH


def cmd_check(args) -> int:
    from oracle.check import NothingToCheckError, check, check_files
    from oracle.golden import GoldenFileError
    from oracle.isolate import CandidateError
    from oracle.layouts import LayoutError

    sys.path.insert(0, str(Path.cwd()))  # the candidate's module, from the folder the command runs in
    try:
        if args.candidate:
            result = check(args.candidate, args.k, golden=args.dir, jobs=args.jobs, timeout=args.timeout,
                           isolate=not args.in_process, layout=args.layout)
        else:
            result = check_files(args.dir, args.grads, args.k, layout=args.layout)
    except (NothingToCheckError, GoldenFileError, CandidateError, LayoutError) as e:
        return _usage(str(e))
    print(result)
    return EXIT_OK if result.ok else EXIT_MISMATCH


def parser() -> argparse.ArgumentParser:
    from contract import ACTIVATIONS
    from oracle.isolate import DEFAULT_TIMEOUT

    p = argparse.ArgumentParser(prog="bptt", description="Hand-derived BPTT, verified against torch.autograd.")
    sub = p.add_subparsers(dest="command", required=True)

    def selection(sp):
        sp.add_argument("-k", metavar="SUBSTRING", help="only cases whose name contains SUBSTRING")
        sp.add_argument("--dtype", choices=("float64", "float32", "all"), default="all")
        sp.add_argument("--case", action="append", metavar="NAME",
                        help="a case by full name, built-in or not (repeatable), e.g. "
                             "many-to-many/tanh/mse/T4-B2-D3-H4-O2/float64")

    v = sub.add_parser("verify", help="manual against autograd and torch.nn.RNN on the built-in cases")
    selection(v)
    v.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    v.add_argument("--allow-tf32", action="store_true", help="leave TF32 on for CUDA float32 (off by default)")
    v.add_argument("--json", metavar="PATH", help="write the results as JSON")
    v.add_argument("--list", action="store_true", help="list the selected case names and exit")
    v.add_argument("-q", "--quiet", action="store_true", help="summary and failures only, no table")
    v.add_argument("--jobs", type=_jobs, metavar="N",
                   help="worker processes (default: the cores on the CPU, 1 on CUDA)")
    v.set_defaults(fn=cmd_verify)

    d = sub.add_parser("derive", help="the seed's derivation with real numbers, manual beside autograd")
    d.add_argument("--steps", type=int, default=None,
                   help="time steps (default 2: the notes' first example; 4: BPTT2; 3 for --cell lstm|gru)")
    d.add_argument("--cell", choices=("elman", "lstm", "gru"), default="elman",
                   help="the seed model's Elman cell (default), or an LSTM or GRU layer's backward pass")
    d.add_argument("--activation", choices=ACTIVATIONS, default="tanh")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(fn=cmd_derive)

    e = sub.add_parser("export", help="write golden cases (.safetensors) after manual, autograd and FD agree")
    e.add_argument("dir")
    selection(e)
    e.add_argument("--layout", choices=("torch", "onnx"), default="torch",
                   help="module cases' tensor names and shapes: torch's state_dict (default) or ONNX's W/R/B "
                        "operators (docs/layouts.md); seed-model cases keep their own names")
    e.set_defaults(fn=cmd_export)

    c = sub.add_parser("check", help="check a candidate's gradients against golden cases")
    c.add_argument("dir", help="folder of golden cases from `bptt export`")
    who = c.add_mutually_exclusive_group(required=True)
    who.add_argument("--candidate", metavar="MODULE:FUNCTION", help="a function with manual.gradients' signature")
    who.add_argument("--grads", metavar="DIR2", help="folder of <case>.safetensors or .npz gradient files")
    c.add_argument("-k", metavar="SUBSTRING", help="only cases whose name contains SUBSTRING")
    c.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"per case, for the candidate's calls (default {DEFAULT_TIMEOUT:g}); past it the case fails")
    c.add_argument("--jobs", type=_jobs, metavar="N",
                   help="worker processes running the candidate (default: the cores)")
    c.add_argument("--layout", choices=("torch", "onnx"),
                   help="the layout the candidate's module gradients come in (default: each golden file's own)")
    c.add_argument("--in-process", action="store_true",
                   help="run the candidate in this process (for a debugger): no isolation, no timeout")
    c.set_defaults(fn=cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help (0) and argparse's usage errors (2)
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    try:
        return args.fn(args)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        print("bptt: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `bptt derive | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
