"""The contract that ``manual.gradients`` and ``reference.gradients`` share.

Names (activations, losses, topologies, gradient sets), the shape rules of
the public signature, and the input checks that turn bad input into a
``ValueError`` or ``TypeError`` naming the argument, what was expected, what
was given, and a remedy: a ``Refusal`` (``contract.errors``: ``BadValue``,
``BadType``), whose why and remedy are data and whose message is built once.

It imports neither ``torch`` nor ``manual``/``reference``/``oracle``, so both
sides can use it without breaking the dependency rule (docs/design.md): ``manual`` stays
runnable with NumPy alone and ``reference`` stays blind to the derivation.
"""

from contract.checks import Problem, all_finite, check_inputs, first_nonfinite_step
from contract.errors import BadType, BadValue, Refusal
from contract.names import (
    ACTIVATIONS,
    GRAD_NAMES,
    LOSSES,
    PARAM_NAMES,
    STEP_NAMES,
    TOPOLOGIES,
    NonFiniteGradientError,
)

__all__ = [
    "ACTIVATIONS",
    "BadType",
    "BadValue",
    "Refusal",
    "GRAD_NAMES",
    "LOSSES",
    "PARAM_NAMES",
    "STEP_NAMES",
    "TOPOLOGIES",
    "NonFiniteGradientError",
    "Problem",
    "all_finite",
    "check_inputs",
    "first_nonfinite_step",
]
