"""The same RNN in PyTorch, with gradients from torch.autograd.

Never imports ``manual``: this side knows the model, not the derivation.

* :func:`gradients` — the model as an unrolled loop of torch operations; the
  full gradient set, per-step ``h`` and ``z`` through ``retain_grad``.
* :func:`per_step_gradients` — the same model with an untied copy of Wxh, Whh
  and bh at every step, so autograd itself yields each step's contribution
  (the seed's "dL/dWhh (t = 2)").
* :func:`forward` — the unrolled model's z, h, outputs and loss.
* :func:`nn_rnn_gradients` — the model built on ``torch.nn.RNN`` (torch's
  production kernel, cuDNN on CUDA) for the parameter, ``x`` and ``h0`` gradients.
* :func:`nn_module_gradients`, :func:`unrolled_module_gradients` — the module
  contract (``manual.module_gradients``' signature): through ``torch.nn.RNN``
  itself (packed input for variable lengths), and unrolled per layer and
  direction with per-step ``h_l{k}{s}``, ``z_l{k}{s}``.
* :func:`unrolled_recurrence_gradients`, :func:`recurrence_forward` — the
  matrix-state recurrences (``manual.recurrence_gradients``' signature), each
  step in its own matrix form, unrolled, with dL/dS_t per step.
"""

from reference.autograd import forward, gradients, per_step_gradients
from reference.module import nn_module_gradients, unrolled_module_gradients
from reference.nn_rnn import NN_RNN_ACTIVATIONS, nn_rnn_gradients
from reference.recurrence import recurrence_forward, unrolled_recurrence_gradients

__all__ = [
    "NN_RNN_ACTIVATIONS",
    "forward",
    "gradients",
    "nn_module_gradients",
    "nn_rnn_gradients",
    "per_step_gradients",
    "recurrence_forward",
    "unrolled_module_gradients",
    "unrolled_recurrence_gradients",
]
