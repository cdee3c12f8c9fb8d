"""Recurrent cells: each one direction of one layer forward and back, beside its derivation; one file per cell,
named by its row in ``contract.cells``.

Every cell offers ``forward(xp, kernels, config, xproj, h0, c0, W, masks)`` and
``backward(xp, kernels, config, cache, W, d_out, dhn, dcn, masks)`` over a
whole (time-flipped, for the reverse direction) sequence, given the input
projection x_t W_ihᵀ + b_ih of every step; ``manual.stack`` does the rest.
``c0`` and ``dcn`` are tuples of the carried states beyond h (the LSTM's (c,), the sLSTM's (c, n, m); empty for
a cell that carries h alone), and the forward's final states and the backward's initial-state gradients come back
as such tuples (None for none). ``masks`` (T, B, 1) or (T, B, H), 0 or 1: where 0 the step keeps every carried
state as it was (a padded step, or a zoned-out unit); the forward's output is h_t of every step, unmasked.
"""

import importlib

from contract.cells import CELLS as ROWS

CELLS = {mode: importlib.import_module(f"manual.cells.{row.file}") for mode, row in ROWS.items()}  # mode → cell

__all__ = ["CELLS"]
