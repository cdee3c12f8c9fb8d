"""Every built-in case, of both kinds: the seed model's (``oracle.cases``) and the module's (``oracle.module_cases``).

A case's ``kind`` says which signature a candidate for it has: "seed" is
``manual.gradients``', "module" is ``manual.module_gradients``'.
"""

from __future__ import annotations

import math

from oracle.cases import DTYPES, Case, all_cases, select
from oracle.module_cases import ModuleCase, all_module_cases


def kind_of(case) -> str:
    return "module" if isinstance(case, ModuleCase) else "seed"


MAX_CASE_ELEMENTS = 20_000_000  # inputs and gradients together; the largest built-in case holds under 10,000
MAX_CASE_LAYERS = 16


def parse_case(name: str):
    """A case of either kind from its full name (ASCII digits; sizes bounded, so that a typo cannot ask for
    petabytes or a hundred thousand layers)."""
    if not name.isascii():
        raise ValueError(f"case name must be ASCII; got {name!r}. Remedy: e.g. "
                         "many-to-many/tanh/mse/T4-B2-D3-H4-O2/float64")
    case = ModuleCase.parse(name) if name.startswith("module/") else Case.parse(name)
    from oracle.golden import file_shapes  # here: golden imports this module

    layers = getattr(getattr(case, "config", None), "num_layers", 1)
    n = sum(math.prod(s) for s, _ in file_shapes(case).values())
    if n > MAX_CASE_ELEMENTS or layers > MAX_CASE_LAYERS:
        raise ValueError(f"case {name!r} is too large to check here: {n:,} elements and {layers} layer(s), at most "
                         f"{MAX_CASE_ELEMENTS:,} and {MAX_CASE_LAYERS}. Remedy: smaller T, B or sizes (the "
                         "derivation does not change with size).")
    return case


def builtin_cases(dtypes=DTYPES) -> list:
    """The seed model's matrix, then the module matrix."""
    return [*all_cases(dtypes=dtypes), *all_module_cases(dtypes=dtypes)]


__all__ = ["builtin_cases", "kind_of", "parse_case", "select"]
