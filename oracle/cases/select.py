"""Which cases a run takes: ``-k`` expressions, as pytest's, and ``--shard i/N``.

An expression is words joined by ``and``, ``or``, ``not`` and parentheses
(``LSTM and L1 and not bi``). A case name splits at ``/`` and ``-`` into
parts (``module``, ``LSTM``, ``L1``, ``bi``, ``T5``, ``lengths``, ``full`` …).
A word that is a part of some case name (of the set being selected, or of
the built-in matrix) matches exactly the names that have that part (``T5``
does not match ``T50``, ``float16`` does not match ``bfloat16``);
any other word matches as a substring of the name (``module/LSTM``,
``many-to-one``, ``T17-B3``), as a plain ``-k`` always did. Matching is
case-sensitive, as the names are.

A shard is a stable split by case name: case c is in shard i of N when
crc32(name) mod N = i − 1, whatever else is selected or on which machine.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Callable, Iterable

from contract.errors import BadValue

KEYWORDS = ("and", "or", "not")
REMEDY = "e.g. -k \"LSTM and L1 and not bi\" (words, and/or/not, parentheses)"


def parts(name: str) -> set[str]:
    """A case name's parts: split at '/' and '-'."""
    return set(re.split(r"[/-]", name))


def _tokens(expr: str) -> list[str]:
    return re.findall(r"\(|\)|[^\s()]+", expr)


def compile_expression(expr: str, vocabulary: set[str]) -> Callable[[str], bool]:
    """A predicate on case names for ``expr``; ``vocabulary``: the parts of every name in the set (see the
    module's docstring). ValueError naming the expression and what is wrong in it."""
    if not isinstance(expr, str):
        raise BadValue(f"-k expression must be a str; got {type(expr).__name__} {expr!r}. Remedy: {REMEDY}.")
    tokens, pos = _tokens(expr), 0

    def fail(what: str):
        raise BadValue(f"-k {expr!r}: {what}. Remedy: {REMEDY}.")

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def either():
        terms = [both()]
        while peek() == "or":
            take()
            terms.append(both())
        return lambda n, p: any(t(n, p) for t in terms)

    def both():
        terms = [negated()]
        while peek() == "and":
            take()
            terms.append(negated())
        return lambda n, p: all(t(n, p) for t in terms)

    def negated():
        if peek() == "not":
            take()
            inner = negated()
            return lambda n, p: not inner(n, p)
        return atom()

    def atom():
        tok = peek()
        if tok is None:
            fail("ends where a word was expected")
        if tok == "(":
            take()
            inner = either()
            if peek() != ")":
                fail("a '(' is not closed")
            take()
            return inner
        if tok in (")", "and", "or"):
            fail(f"{tok!r} where a word was expected")
        word = take()
        if word in vocabulary:
            return lambda n, p: word in p
        return lambda n, p: word in n

    if not tokens:
        fail("is empty")
    tree = either()
    if pos != len(tokens):
        fail(f"unexpected {tokens[pos]!r}")
    return lambda name: tree(name, parts(name))


@functools.cache
def builtin_parts() -> frozenset[str]:
    """The parts of every built-in case's name: words an expression means as parts in any set."""
    from oracle.cases import builtin_cases  # here: oracle.cases imports this module

    return frozenset().union(*(parts(c.name) for c in builtin_cases()))


def select(cases: list, expr: str | None) -> list:
    """The cases whose names ``expr`` selects (all when it is empty or None)."""
    if not expr:
        return list(cases)
    vocabulary = builtin_parts().union(*(parts(c.name) for c in cases))
    keep = compile_expression(expr, vocabulary)
    return [c for c in cases if keep(c.name)]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` → (i, N), 1 ≤ i ≤ N; ValueError with a remedy otherwise."""
    m = re.fullmatch(r"(\d+)/(\d+)", text.strip()) if isinstance(text, str) else None
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise BadValue(f"shard must read i/N with 1 ≤ i ≤ N; got {text!r}. Remedy: e.g. --shard 1/4 … --shard 4/4.")
    return int(m.group(1)), int(m.group(2))


def in_shard(name: str, shard: tuple[int, int] | None) -> bool:
    """Whether the case ``name`` falls in ``shard`` (i, N) (every case when None)."""
    return shard is None or zlib.crc32(name.encode()) % shard[1] == shard[0] - 1


def shard_of(cases: Iterable, shard: tuple[int, int] | None) -> list:
    return [c for c in cases if in_shard(c.name, shard)]


__all__ = ["compile_expression", "in_shard", "parse_shard", "parts", "select", "shard_of"]
