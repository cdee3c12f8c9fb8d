"""`bptt verify`: manual against autograd and torch's own modules on the built-in cases."""

from __future__ import annotations

import json

from oracle.cli.common import (
    EXIT_MISMATCH,
    EXIT_OK,
    device,
    jobs,
    selected,
    selection,
    setup,
    shard_text,
    writable_file,
)


def add(sub) -> None:
    """The `bptt verify` subcommand's arguments."""
    v = sub.add_parser("verify", help="manual against autograd and torch.nn.RNN on the built-in cases")
    selection(v)
    v.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    v.add_argument("--allow-tf32", action="store_true", help="leave TF32 on for CUDA float32 (off by default)")
    v.add_argument("--json", metavar="PATH", help="write the results as JSON")
    v.add_argument("--list", action="store_true", help="list the selected case names and exit")
    talk = v.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="store_true", help="the full table: a row per case, a column per "
                                                                   "tensor kind")
    talk.add_argument("-q", "--quiet", action="store_true", help="failures and the last line only")
    v.add_argument("--jobs", type=jobs, metavar="N",
                   help="worker processes (default: the cores on the CPU, 1 on CUDA)")
    v.set_defaults(fn=cmd_verify)


def cmd_verify(args) -> int:
    from oracle.summary import group_table
    from oracle.verify import Verification, failures_text, verify

    chosen = selected(args)
    if args.list:
        print("\n".join(c.name for c in chosen))
        return EXIT_OK
    where = device(args.device)
    out = writable_file(args.json) if args.json else None
    try:
        if not chosen:  # a shard that holds none of the selection: nothing to verify, nothing wrong
            print(f"0 cases (shard {shard_text(args)} holds none of the selection)")
            v = Verification(device=where, shard=shard_text(args))
            if out:
                out.write(json.dumps({**v.to_json(), "setup": setup(args, "k", "case", "dtype", "device")}))
            return EXIT_OK
        v = verify(chosen, device=where, allow_tf32=args.allow_tf32, jobs=args.jobs)
        v.shard = shard_text(args)
        if args.verbose:
            print(v.table())
        if not v.ok:
            print(failures_text(v))
        if not args.quiet:
            print(group_table(v.records()))
        print(v.summary())
        if out:
            out.write(json.dumps({**v.to_json(), "setup": setup(args, "k", "case", "dtype", "device")}, indent=1))
    finally:
        if out:
            out.close()
    return EXIT_OK if v.ok else EXIT_MISMATCH


