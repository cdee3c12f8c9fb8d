import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "candidates"))  # the catalogues, importable by name (MODULE:FUNCTION)

from helpers import STATS  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import manual  # noqa: E402
from manual.compiled import available  # noqa: E402

# Every backend present runs the tests of manual.gradients: the compiled one (numba, the `fast` extra) and the
# array-API one. Modules that test the oracle, the module API (its own code path) or that patch the array-API
# path's internals (the mutants) run on array-api alone.
BACKENDS_PRESENT = ("array-api", "numba") if available() else ("array-api",)
ONE_BACKEND = {"test_backends", "test_mutants", "test_wrong_candidates", "test_module", "test_layouts",
               "test_golden", "test_cli", "test_readme", "test_dependency_rule", "test_checker_resources", "test_wire",
               "test_module_finite_differences", "test_selection_and_reports", "test_plugin", "test_ray",
               "test_fuzz", "test_low_precision", "test_recurrence", "test_recurrence_bad_input",
               "test_recurrence_library", "test_minimal_cells", "test_slstm", "test_public_cells"}
# The backend fixture only sets a context variable, the same for every example of a property test.
settings.register_profile("bptt", suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.load_profile("bptt")


@pytest.fixture(autouse=True)
def manual_backend(request, monkeypatch):
    """The backend manual.gradients uses by default in this test, worker processes included."""
    name = getattr(request, "param", "array-api")
    monkeypatch.setenv("BPTT_BACKEND", name)
    with manual.use_backend(name):
        yield name


def pytest_generate_tests(metafunc):
    if metafunc.module.__name__.rsplit(".", 1)[-1] not in ONE_BACKEND:
        metafunc.parametrize("manual_backend", BACKENDS_PRESENT, indirect=True)


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
