"""Recurrent cells: each a forward step and a backward step, beside its derivation."""

from manual.cells import elman

CELLS = {"RNN_TANH": elman, "RNN_RELU": elman}  # mode (torch.nn.RNNBase's names) → cell

__all__ = ["CELLS", "elman"]
