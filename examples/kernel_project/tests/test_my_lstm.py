"""The kernel project's gradient tests: one pytest test per case, judged by bptt-reference."""

import pytest
from my_lstm import lstm_gradients

import oracle


@pytest.mark.bptt_cases("module and LSTM and L1 and not bi and not p2")
def test_lstm_backward(bptt_case):
    oracle.assert_gradients(lstm_gradients, bptt_case)
