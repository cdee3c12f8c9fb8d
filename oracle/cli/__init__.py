"""The `bptt` command, one module per subcommand. Exit codes: 0 success, 1 a gradient mismatch, 2 bad usage or
input, 130 interrupted."""

from __future__ import annotations

import argparse
import os
import sys

from oracle.cli import check, derive, export, fuzz, merge, verify
from oracle.cli.common import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

SUBCOMMANDS = (verify, derive, export, check, fuzz, merge)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bptt", description="Hand-derived BPTT, verified against torch.autograd.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.add(sub)
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
