"""`bptt merge`: the --json reports of a split run's shards as one summary and one exit code."""

from __future__ import annotations

import json
import math

from contract.errors import BadValue
from oracle.cli.common import EXIT_OK, usage, writable_file

COMMANDS = ("verify", "check", "fuzz")


def add(sub) -> None:
    """The `bptt merge` subcommand's arguments."""
    m = sub.add_parser("merge", help="combine the --json reports of shards (--shard i/N) into one summary")
    m.add_argument("reports", nargs="+", metavar="REPORT.json", help="one per shard, every shard of one split")
    m.add_argument("--json", metavar="PATH", help="write the merged report as JSON")
    m.add_argument("-q", "--quiet", action="store_true", help="the last line only")
    m.set_defaults(fn=cmd_merge)


class MergeError(BadValue):
    """Reports that cannot be one run (the CLI's exit code 2)."""


def _record(r: object, where: str) -> dict:
    """One case record, checked field by field (a report is data from elsewhere)."""
    from oracle.summary import STATUS

    ok = isinstance(r, dict) and all(isinstance(r.get(k), str) for k in ("name", "group", "dtype", "reason")) \
        and r.get("status") in STATUS and (r.get("worst") is None or (
            isinstance(r["worst"], (int, float)) and not isinstance(r["worst"], bool) and math.isfinite(r["worst"])))
    if not ok:
        raise MergeError(f"{where}: a case record lacks name, group, dtype, reason (str), status (one of {STATUS}) "
                         "or worst (a number or null)")
    return r


def _report(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError, RecursionError) as e:
        raise MergeError(f"{path}: not a readable JSON report ({type(e).__name__}: {e})") from None
    if not isinstance(doc, dict) or doc.get("command") not in COMMANDS or not isinstance(doc.get("cases"), list):
        raise MergeError(f"{path}: not a report of `bptt verify|check|fuzz --json` (no command and cases)")
    shard = doc.get("shard")
    if shard is not None and not isinstance(shard, str):
        raise MergeError(f"{path}: shard {shard!r} is not i/N")
    doc["cases"] = [_record(r, f"{path}, case {i}") for i, r in enumerate(doc["cases"])]
    return doc


def merge(paths: list[str]) -> dict:
    """The reports at ``paths`` as one: the same command and setup, every shard i/N of one N exactly once, no case
    twice. MergeError saying which condition fails."""
    from oracle.cases.select import parse_shard

    docs = [_report(p) for p in paths]
    commands = {d["command"] for d in docs}
    if len(commands) > 1:
        raise MergeError(f"the reports come from different commands {sorted(commands)}: merge one run's shards")
    shards = []
    for p, d in zip(paths, docs, strict=True):
        if d.get("shard") is None:
            raise MergeError(f"{p} is not a shard (no --shard i/N): merge the reports of `--shard 1/N` … `N/N`")
        try:
            shards.append(parse_shard(d["shard"]))
        except ValueError as e:
            raise MergeError(f"{p}: {e}") from None
    n = {N for _, N in shards}
    if len(n) > 1:
        raise MergeError(f"the shards split into different numbers of parts {sorted(n)}")
    have = sorted(i for i, _ in shards)
    want = list(range(1, next(iter(n)) + 1))
    if have != want:
        missing, twice = sorted(set(want) - set(have)), sorted({i for i in have if have.count(i) > 1})
        raise MergeError(f"shards missing {missing} / given twice {twice} of {want[-1]}: give each i/N once")
    cases = [r for d in docs for r in d["cases"]]
    names = [r["name"] for r in cases]
    if len(set(names)) != len(names):
        raise MergeError("a case appears in two shards: were they split from different selections?")
    setups = {json.dumps(d.get("setup"), sort_keys=True) for d in docs}
    if len(setups) > 1:
        raise MergeError(f"the shards were run with different setups ({' / '.join(sorted(setups))}): merge the "
                         "shards of one run")
    merged = {"command": commands.pop(), "shard": None, "merged": len(docs), "setup": docs[0].get("setup"),
              "cases": sorted(cases, key=lambda r: r["name"])}
    if merged["command"] == "fuzz":  # a fuzz report lists its failure alone: the examples judged are counted
        merged["judged"] = sum(d.get("judged", 0) if type(d.get("judged", 0)) is int else 0 for d in docs)
    return merged


def status(merged: dict) -> int:
    """The merged run's exit status: a fuzz run passed when no shard failed and one judged an example."""
    from oracle.summary import exit_status

    if merged["command"] == "fuzz":
        return 1 if merged["cases"] else 0 if merged["judged"] else 2
    return exit_status(merged["cases"])


def cmd_merge(args) -> int:
    from oracle.summary import counts, group_table

    out = writable_file(args.json) if args.json else None
    try:
        merged = merge(args.reports)
    except MergeError as e:
        if out:
            out.close()
        return usage(f"{str(e).rstrip('.')}. Remedy: `bptt merge shard-1.json … shard-N.json`, each from the same "
                     "command with --shard i/N --json.")
    code = status(merged)
    merged["ok"] = code == EXIT_OK
    if not args.quiet and merged["cases"]:
        print(group_table(merged["cases"]))
    if merged["command"] == "fuzz":
        print(f"fuzz: {merged['judged']} examples judged over {merged['merged']} shards; "
              f"{len(merged['cases'])} failing: " + (", ".join(r["name"] for r in merged["cases"]) or "none"))
    else:
        print(counts(merged["cases"]))
    if out:
        with out:
            out.write(json.dumps(merged, indent=1))
    return code
