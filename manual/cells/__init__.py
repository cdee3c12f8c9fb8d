"""Recurrent cells: each one direction of one layer forward and back, beside its derivation.

Every cell offers ``forward(xp, kernels, config, xproj, h0, c0, W, masks)`` and
``backward(xp, kernels, config, cache, W, d_out, dhn, dcn, masks)`` over a
whole (time-flipped, for the reverse direction) sequence, given the input
projection x_t W_ihᵀ + b_ih of every step; ``manual.stack`` does the rest.
"""

from manual.cells import elman, gru, lstm

CELLS = {"RNN_TANH": elman, "RNN_RELU": elman, "LSTM": lstm, "GRU": gru}  # mode (torch.nn.RNNBase's names) → cell

__all__ = ["CELLS", "elman", "gru", "lstm"]
