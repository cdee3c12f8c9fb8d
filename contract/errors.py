"""One base for every refusal of bad input: what was wrong and what to do, carried as data, the message built once.

Every entry point refuses bad input with a ``Refusal``: ``BadValue`` (a
``ValueError``) or ``BadType`` (a ``TypeError``), or a subclass of either
(``oracle.GoldenFileError``, ``oracle.CandidateError``, …). Each carries
``why`` (naming the argument, the expected and the actual value), ``remedy``
(what works instead) and, for a file, ``where``; ``str(e)`` is built from
them by :func:`message` alone.
"""

from __future__ import annotations

REMEDY = " Remedy: "


def message(why: str, remedy: str | None = None, where: object = None) -> str:
    """``[where: refused: ]why.[ Remedy: remedy.]``: the one way a refusal reads."""
    text = f"{why.rstrip(' .')}." if why.rstrip(" .") else ""
    if remedy:
        text += f"{REMEDY}{remedy.rstrip(' .')}."
    return f"{where}: refused: {text}" if where is not None else text


class Refusal(Exception):  # noqa: N818 - a refusal is what it is; its subclasses are the ValueError/TypeError
    """Bad input, refused: ``why``, ``remedy`` and ``where`` as data.

    ``Refusal("… got 3. Remedy: pass 4.")`` is read as why and remedy; or
    give them apart: ``Refusal(why, remedy, where=path)``.
    """

    def __init__(self, why: str, remedy: str | None = None, *, where: object = None):
        if remedy is None and REMEDY in why:
            why, _, remedy = why.partition(REMEDY)
        self.why, self.remedy, self.where = why.rstrip(" ."), (remedy or "").rstrip(" .") or None, where
        super().__init__(message(self.why, self.remedy, where))


class BadValue(Refusal, ValueError):
    """A value that cannot be used: a shape, a size, a name, a file's content."""


class BadType(Refusal, TypeError):
    """A value of a type that cannot be used."""


__all__ = ["BadType", "BadValue", "Refusal", "message"]
