import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import STATS  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    if STATS["comparisons"]:
        terminalreporter.write_line(
            f"bptt: {STATS['comparisons']} tensor comparisons; largest float64 normalised "
            f"disagreement {STATS['worst_float64']:.2e} ({STATS['worst_where']})")


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


needs_cuda = pytest.mark.skipif(not cuda_available(), reason="no CUDA device on this machine")
