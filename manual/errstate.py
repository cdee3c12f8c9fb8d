"""NumPy's floating-point warnings, kept out of manual's public functions.

An overflow in the forward or backward pass is reported by the project's own
finiteness checks, as a ``NonFiniteGradientError`` naming the first time step;
NumPy's ``RuntimeWarning`` (or, under ``numpy.seterr(all="raise")``, its
``FloatingPointError``) would come first and say less. So NumPy input is
computed under ``numpy.errstate`` with every category ignored; the caller's
error state comes back on exit, error or not. Torch input is left as it is.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from typing import TypeVar

import numpy as np
from array_api_compat import is_numpy_array

F = TypeVar("F", bound=Callable)

IGNORE_ALL = {"over": "ignore", "invalid": "ignore", "divide": "ignore", "under": "ignore"}


def quiet(params: object) -> contextlib.AbstractContextManager:
    """``numpy.errstate`` ignoring everything when ``params['Wxh']`` (which fixes the library) is NumPy's."""
    wxh = params.get("Wxh") if isinstance(params, Mapping) else None
    return np.errstate(**IGNORE_ALL) if is_numpy_array(wxh) else contextlib.nullcontext()


def quiet_for(a: object) -> contextlib.AbstractContextManager:
    """``numpy.errstate`` ignoring everything when ``a`` is a NumPy array."""
    return np.errstate(**IGNORE_ALL) if is_numpy_array(a) else contextlib.nullcontext()


def numpy_quiet_input(fn: F) -> F:
    """Run ``fn(config, state_dict, input, ...)`` quietly when ``input`` is NumPy's."""

    @functools.wraps(fn)
    def wrapper(config, state_dict, input, *args, **kwargs):
        with quiet_for(input):
            return fn(config, state_dict, input, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def numpy_quiet(fn: F) -> F:
    """Run ``fn(params, ...)`` under :func:`quiet`: overflow is the finiteness checks' to report."""

    @functools.wraps(fn)
    def wrapper(params, *args, **kwargs):
        with quiet(params):
            return fn(params, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
