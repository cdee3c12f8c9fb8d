"""The `bptt` command. Exit codes: 0 success, 1 a gradient mismatch, 2 bad usage or input."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2


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
    from oracle.cases import DTYPES, Case, all_cases, select

    if getattr(args, "case", None):
        try:
            return [Case.parse(n) for n in args.case]
        except ValueError as e:
            raise SystemExit(_usage(str(e))) from None
    dtypes = DTYPES if args.dtype == "all" else (args.dtype,)
    chosen = select(all_cases(dtypes=dtypes), args.k)
    if not chosen:
        raise SystemExit(_usage(f"-k {args.k!r} selects no case. Remedy: `bptt verify --list` shows the names."))
    return chosen


def cmd_verify(args) -> int:
    from oracle.verify import failures_text, verify

    cases = _cases(args)
    if args.list:
        print("\n".join(c.name for c in cases))
        return EXIT_OK
    v = verify(cases, device=_device(args.device), allow_tf32=args.allow_tf32)
    if not args.quiet:
        print(v.table())
    if not v.ok:
        print(failures_text(v))
    print(v.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(v.to_json(), indent=1))
    return EXIT_OK if v.ok else EXIT_MISMATCH


def cmd_derive(args) -> int:
    from oracle.derive import lines

    if args.steps < 1:
        return _usage(f"--steps must be at least 1; got {args.steps}. Remedy: --steps 2 is the notes' example.")
    out, ok = lines(args.steps, args.activation, args.seed)
    print("\n".join(out))
    return EXIT_OK if ok else EXIT_MISMATCH


def cmd_export(args) -> int:
    from oracle.export import export

    written, refused = export(Path(args.dir), _cases(args))
    for msg in refused:
        print(msg, file=sys.stderr)
    print(f"wrote {written} golden case(s) to {args.dir}; refused {len(refused)}")
    return EXIT_OK if not refused else EXIT_MISMATCH


def _load_candidate(spec: str):
    module, _, func = spec.partition(":")
    if not module or not func:
        raise SystemExit(_usage(f"--candidate must be MODULE:FUNCTION; got {spec!r}. "
                                "Remedy: e.g. --candidate manual:gradients"))
    sys.path.insert(0, str(Path.cwd()))
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as e:
        raise SystemExit(_usage(f"--candidate {spec}: {e}. Remedy: run from the folder that holds the "
                                "module, or install it.")) from None
    if not callable(fn):
        raise SystemExit(_usage(f"--candidate {spec} is not callable"))
    return fn


def _grads_files(folder: Path):
    """candidate_for(case) reading a candidate's gradient file (refused when hostile: exit 2)."""
    from oracle.golden import load_grads

    def candidate_for(case):
        stem = folder / case.file_stem
        found = [p for p in (stem.with_suffix(".safetensors"), stem.with_suffix(".npz"))
                 if p.exists() or p.is_symlink()]
        if not found:
            def missing(*args, **kwargs):
                raise FileNotFoundError(f"no gradient file {stem}.safetensors or .npz")
            return missing
        got = load_grads(found[0], case)
        return lambda *args, **kwargs: got

    return candidate_for


def cmd_check(args) -> int:
    from oracle.check import check_golden
    from oracle.golden import GoldenFileError

    folder = Path(args.dir)
    if not folder.is_dir():
        return _usage(f"{folder} is not a folder. Remedy: write golden cases with `bptt export {folder}`.")
    if not any(folder.glob("*.safetensors")):
        return _usage(f"{folder} holds no .safetensors golden cases. Remedy: `bptt export {folder}`.")
    if args.candidate:
        candidate = _load_candidate(args.candidate)
        candidate_for = lambda case: candidate  # noqa: E731
    else:
        candidate_for = _grads_files(Path(args.grads))
    try:
        result = check_golden(folder, candidate_for, args.k)
    except GoldenFileError as e:
        return _usage(str(e))
    print(result)
    return EXIT_OK if result.ok else EXIT_MISMATCH


def parser() -> argparse.ArgumentParser:
    from contract import ACTIVATIONS

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
    v.set_defaults(fn=cmd_verify)

    d = sub.add_parser("derive", help="the seed's derivation with real numbers, manual beside autograd")
    d.add_argument("--steps", type=int, default=2, help="time steps (2: the notes' first example, 4: BPTT2)")
    d.add_argument("--activation", choices=ACTIVATIONS, default="tanh")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(fn=cmd_derive)

    e = sub.add_parser("export", help="write golden cases (.safetensors) after manual, autograd and FD agree")
    e.add_argument("dir")
    selection(e)
    e.set_defaults(fn=cmd_export)

    c = sub.add_parser("check", help="check a candidate's gradients against golden cases")
    c.add_argument("dir", help="folder of golden cases from `bptt export`")
    who = c.add_mutually_exclusive_group(required=True)
    who.add_argument("--candidate", metavar="MODULE:FUNCTION", help="a function with manual.gradients' signature")
    who.add_argument("--grads", metavar="DIR2", help="folder of <case>.safetensors or .npz gradient files")
    c.add_argument("-k", metavar="SUBSTRING", help="only cases whose name contains SUBSTRING")
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


if __name__ == "__main__":
    sys.exit(main())
