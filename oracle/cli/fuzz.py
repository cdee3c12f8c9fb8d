"""`bptt fuzz`: random configurations against a candidate; a failure shrunk to the smallest case, named."""

from __future__ import annotations

import argparse

from oracle.checker.isolate import DEFAULT_TIMEOUT
from oracle.cli.common import Once, positive, runs_a_candidate, seconds, setup, shard, shard_text, usage, writable_file


def budget(value: str) -> float:
    from oracle.fuzzing import parse_budget

    try:
        return parse_budget(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add(sub) -> None:
    """The `bptt fuzz` subcommand's arguments."""
    from contract.cells import CELLS
    from contract.recurrence import VARIANTS
    from oracle.fuzzing import DEFAULT_BUDGET, DEFAULT_EXAMPLES, MODELS

    f = sub.add_parser("fuzz", help="random configurations against a candidate; a failure shrunk and named")
    f.add_argument("--candidate", required=True, metavar="MODULE:FUNCTION",
                   help="manual.module_gradients' signature (manual.gradients' with --model seed, "
                        "manual.recurrence_gradients' with --model recurrence)")
    f.add_argument("--model", choices=MODELS, default="module",
                   help="module cases (default), the seed model's, or the matrix-state recurrences'")
    f.add_argument("--cell", type=str.upper, choices=tuple(CELLS), help="only this cell (default: every cell); "
                                                                          "any case, e.g. lstm")
    f.add_argument("--variant", choices=tuple(VARIANTS), help="with --model recurrence: only this variant "
                                                               "(default: every one)")
    f.add_argument("--layout", choices=("torch", "onnx"), default="torch")
    f.add_argument("--dtype", choices=("float64", "float32", "bfloat16", "float16", "all"), default="all",
                   help="the cases' dtype (default all: float64 and float32; the low precisions, not the seed model's)")
    f.add_argument("--max-examples", type=positive("--max-examples 200"), default=DEFAULT_EXAMPLES, metavar="N",
                   help=f"at most N judged configurations (default {DEFAULT_EXAMPLES}; declined ones not counted)")
    f.add_argument("--budget", type=budget, default=DEFAULT_BUDGET, metavar="TIME",
                   help=f"search time, e.g. 90s, 10m (default {DEFAULT_BUDGET / 60:g}m); a failure found is "
                        "always shrunk")
    f.add_argument("--seed", type=int, help="hypothesis's seed, for a repeatable search (hypothesis then keeps no "
                                            "failure in its database)")
    f.add_argument("--shard", type=shard, metavar="i/N", help="only configurations whose names fall in shard i/N")
    f.add_argument("-k", metavar="EXPRESSION", action=Once,
                   help="only configurations whose names the expression selects, e.g. \"not bi and float64\"")
    f.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"per case, for the candidate's calls (default {DEFAULT_TIMEOUT:g})")
    where = f.add_mutually_exclusive_group()
    where.add_argument("--in-process", action="store_true", help="run the candidate in this process (no isolation)")
    where.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                       help="each example a Ray task (the ray extra): a local instance, or the cluster at ADDRESS")
    f.add_argument("--num-gpus", type=float, default=0, metavar="G", help="GPUs per Ray task (with --ray)")
    db = f.add_mutually_exclusive_group()
    db.add_argument("--database", metavar="DIR", help="hypothesis's example database (default: "
                                                      ".hypothesis/bptt-fuzz/<candidate-model-cell-layout>)")
    db.add_argument("--no-database", action="store_true", help="keep no failing examples between runs")
    f.add_argument("--json", metavar="PATH", help="write the result as JSON (for bptt merge)")
    f.set_defaults(fn=cmd_fuzz)


def cmd_fuzz(args) -> int:
    from oracle.checker.candidate import CandidateError
    from oracle.fuzzing import fuzz

    refused = runs_a_candidate(args)
    if refused is not None:
        return refused
    if args.model == "seed" and (args.cell or args.layout != "torch"):
        return usage("--model seed has one cell and one layout: leave out --cell and --layout. Remedy: "
                     f"`bptt fuzz --candidate {args.candidate} --model seed`.")
    wrong = "--cell" if args.model == "recurrence" and args.cell else \
        "--variant" if args.model != "recurrence" and args.variant else None
    if wrong:
        return usage(f"--cell is for module cases and --variant for recurrence cases; got --model {args.model} "
                     f"with {wrong}. Remedy: `bptt fuzz --candidate {args.candidate} --model recurrence --variant "
                     "gated_delta_rule`, or --model module --cell LSTM.")
    out = writable_file(args.json) if args.json else None
    dtypes = ("float64", "float32") if args.dtype == "all" else (args.dtype,)
    database = False if args.no_database else (args.database or True)
    try:
        result = fuzz(args.candidate, model=args.model, cell=args.cell, variant=args.variant, layout=args.layout,
                      dtypes=dtypes, max_examples=args.max_examples, budget=args.budget, seed=args.seed,
                      shard=shard_text(args), isolate=not args.in_process, timeout=args.timeout,
                      database=database, ray=args.ray, num_gpus=args.num_gpus, expression=args.k)
    except (CandidateError, ValueError) as e:
        if out:
            out.close()
        return usage(str(e))
    if result.failure:
        print(result.failure)
    print(result.summary())
    if out:
        import json

        doc = {**result.to_json(), "setup": setup(args, "candidate", "k", "model", "cell", "variant", "layout", "dtype",
                                                  "max_examples", "budget", "seed")}
        with out:
            out.write(json.dumps(doc, indent=1))
    return result.exit_status
