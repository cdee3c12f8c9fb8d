"""Every built-in case, of both kinds: the seed model's (``oracle.cases``) and the module's (``oracle.module_cases``).

A case's ``kind`` says which signature a candidate for it has: "seed" is
``manual.gradients``', "module" is ``manual.module_gradients``'.
"""

from __future__ import annotations

from oracle.cases import DTYPES, Case, all_cases, select
from oracle.module_cases import ModuleCase, all_module_cases


def kind_of(case) -> str:
    return "module" if isinstance(case, ModuleCase) else "seed"


def parse_case(name: str):
    """A case of either kind from its full name."""
    return ModuleCase.parse(name) if name.startswith("module/") else Case.parse(name)


def builtin_cases(dtypes=DTYPES) -> list:
    """The seed model's matrix, then the module matrix."""
    return [*all_cases(dtypes=dtypes), *all_module_cases(dtypes=dtypes)]


__all__ = ["builtin_cases", "kind_of", "parse_case", "select"]
