"""Hand-derived forward pass and BPTT for the Elman RNN. No autodiff, ever.

Runs with NumPy alone; the same lines run on torch tensors (CPU or CUDA)
through the array-API standard (``array_api_compat``).
"""

from contract import ACTIVATIONS, GRAD_NAMES, LOSSES, TOPOLOGIES, NonFiniteGradientError
from manual import seed
from manual.bptt import BACKENDS, forward, gradients, use_backend
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
    "seed",
    "use_backend",
]
