"""Hand-derived forward passes and BPTT: the Elman RNN (``gradients``), torch's RNN, LSTM and GRU modules
(``module_gradients``) and the matrix-state recurrences (``recurrence_gradients``). No autodiff, ever.

Runs with NumPy alone; the same lines run on torch tensors (CPU or CUDA)
through the array-API standard (``array_api_compat``).
"""

from contract import ACTIVATIONS, GRAD_NAMES, LOSSES, TOPOLOGIES, NonFiniteGradientError
from manual import seed
from manual.bptt import BACKENDS, forward, gradients, use_backend
from manual.recurrence import recurrence_forward, recurrence_gradients
from manual.stack import module_forward, module_gradients

__all__ = [
    "ACTIVATIONS",
    "BACKENDS",
    "GRAD_NAMES",
    "LOSSES",
    "TOPOLOGIES",
    "NonFiniteGradientError",
    "forward",
    "gradients",
    "module_forward",
    "module_gradients",
    "recurrence_forward",
    "recurrence_gradients",
    "seed",
    "use_backend",
]
