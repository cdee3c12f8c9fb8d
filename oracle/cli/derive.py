"""`bptt derive`: the learner's view, each equation at each step with manual's numbers beside autograd's."""

from __future__ import annotations

from contract import ACTIVATIONS
from contract.cells import CELL_FILES
from contract.recurrence import VARIANTS
from oracle.cli.common import EXIT_MISMATCH, EXIT_OK, usage


def add(sub) -> None:
    """The `bptt derive` subcommand's arguments."""
    d = sub.add_parser("derive", help="the seed's derivation with real numbers, manual beside autograd")
    cells = [f for f, row in CELL_FILES.items() if row.equations]  # every cell whose row gives its equations
    d.add_argument("--steps", type=int, default=None,
                   help="time steps (default 2: the notes' first example; 4: BPTT2; 3 for a --cell layer)")
    d.add_argument("--cell", choices=("elman", *cells), default="elman",
                   help=f"the seed model's Elman cell (default), or one layer's backward pass: {', '.join(cells)}")
    d.add_argument("--recurrence", choices=tuple(VARIANTS), metavar="VARIANT",
                   help=f"a matrix-state recurrence's backward pass, step by step: {', '.join(VARIANTS)}")
    d.add_argument("--activation", choices=ACTIVATIONS, default="tanh")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(fn=cmd_derive)


def cmd_derive(args) -> int:
    from oracle.derive import lines

    args.steps_given = args.steps is not None
    args.steps = 2 if args.steps is None else args.steps
    if args.steps < 1:
        return usage(f"--steps must be at least 1; got {args.steps}. Remedy: --steps 2 is the notes' example.")
    if args.seed < 0:
        return usage(f"--seed must be a non-negative integer; got {args.seed}. Remedy: --seed 0.")
    if args.recurrence:
        from oracle.derive_recurrence import recurrence_lines

        if args.cell != "elman" or args.activation != "tanh":
            return usage("--recurrence prints a matrix-state recurrence, which has no cell and no activation. "
                         f"Remedy: `bptt derive --recurrence {args.recurrence}` alone, or with --steps, --seed.")
        out, ok = recurrence_lines(args.recurrence, args.steps if args.steps_given else 3, args.seed)
        print("\n".join(out))
        return EXIT_OK if ok else EXIT_MISMATCH
    if args.cell != "elman":  # "elman": the seed model's own derivation, below
        from oracle.derive_cells import cell_lines

        choices = CELL_FILES[args.cell].nonlinearities
        if args.activation not in choices:
            return usage(f"--activation {args.activation} is not one of the {args.cell} cell's {choices}. "
                         f"Remedy: --activation {choices[0]}.")
        out, ok = cell_lines(args.cell, args.steps if args.steps_given else 3, args.seed, args.activation)
        print("\n".join(out))
        return EXIT_OK if ok else EXIT_MISMATCH
    out, ok = lines(args.steps, args.activation, args.seed)
    print("\n".join(out))
    return EXIT_OK if ok else EXIT_MISMATCH


