"""`bptt export`: golden cases, written after manual, autograd and finite differences agree."""

from __future__ import annotations

import sys
from pathlib import Path

from oracle.cli.common import EXIT_MISMATCH, EXIT_OK, selected, selection, usage, writable_folder


def add(sub) -> None:
    """The `bptt export` subcommand's arguments."""
    e = sub.add_parser("export", help="write golden cases (.safetensors) after manual, autograd and FD agree")
    e.add_argument("dir")
    selection(e)
    e.add_argument("--layout", choices=("torch", "onnx"), default="torch",
                   help="module cases' tensor names and shapes: torch's state_dict (default) or ONNX's W/R/B "
                        "operators (docs/layouts.md); seed-model cases keep their own names")
    e.add_argument("--list", action="store_true", help="list the selected case names and exit")
    e.set_defaults(fn=cmd_export)


def cmd_export(args) -> int:
    from oracle.files.export import export

    folder = Path(args.dir)
    chosen = selected(args)
    if args.list:
        print("\n".join(c.name for c in chosen))
        return EXIT_OK
    if not chosen:  # a shard that holds none of the selection
        print("wrote 0 golden cases (this shard holds none of the selection)")
        return EXIT_OK
    writable_folder(folder)
    try:
        written, refused, skipped = export(folder, chosen, args.layout)
    except OSError as e:
        return usage(f"writing to {folder} failed ({e.strerror}). Remedy: free space or pass another folder.")
    for msg in refused + skipped:
        print(msg, file=sys.stderr)
    if not written and not refused:
        return usage(f"none of the {len(skipped)} selected case(s) has a form in the {args.layout} layout. "
                      "Remedy: --layout torch, or select other cases with -k.")
    print(f"wrote {written} golden case(s) to {args.dir} in the {args.layout} layout; refused {len(refused)}"
          + (f"; skipped {len(skipped)} with no {args.layout} form" if skipped else ""))
    return EXIT_OK if not refused else EXIT_MISMATCH


