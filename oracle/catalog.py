"""Every built-in case, of both kinds: the seed model's (``oracle.cases``) and the module's (``oracle.module_cases``).

A case's ``kind`` says which signature a candidate for it has: "seed" is
``manual.gradients``', "module" is ``manual.module_gradients``'.
"""

from __future__ import annotations

from oracle.cases import DTYPES, Case, all_cases, select
from oracle.module_cases import ModuleCase, all_module_cases


def kind_of(case) -> str:
    return "module" if isinstance(case, ModuleCase) else "seed"


MAX_CASE_LAYERS = 16


def parse_case(name: str):
    """A case of either kind from its full name (ASCII digits; sizes bounded, so that a typo cannot ask for
    petabytes or a hundred thousand layers)."""
    if not name.isascii():
        raise ValueError(f"case name must be ASCII; got {name!r}. Remedy: e.g. "
                         "many-to-many/tanh/mse/T4-B2-D3-H4-O2/float64")
    case = ModuleCase.parse(name) if name.startswith("module/") else Case.parse(name)
    from oracle.golden import MAX_ELEMENTS, case_elements  # here: golden imports this module

    layers = getattr(getattr(case, "config", None), "num_layers", 1)
    n = case_elements(case)
    if n > MAX_ELEMENTS or layers > MAX_CASE_LAYERS:
        raise ValueError(f"case {name!r} is too large to check here: {n:,} elements and {layers} layer(s), at most "
                         f"{MAX_ELEMENTS:,} (a golden file's limit) and {MAX_CASE_LAYERS}. Remedy: smaller T, B or "
                         "sizes (the derivation does not change with size).")
    return case


def builtin_cases(dtypes=DTYPES) -> list:
    """The seed model's matrix, then the module matrix."""
    return [*all_cases(dtypes=dtypes), *all_module_cases(dtypes=dtypes)]


__all__ = ["builtin_cases", "kind_of", "parse_case", "select"]
