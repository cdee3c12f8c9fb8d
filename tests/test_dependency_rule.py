"""The dependency rule (docs/design.md): manual runs with NumPy alone; reference never sees manual."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports(package: str) -> set[str]:
    """Top-level names every module of ``package`` imports."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package, forbidden", [
    ("manual", {"torch", "reference", "oracle"}),
    ("contract", {"torch", "manual", "reference", "oracle"}),
    ("reference", {"manual", "oracle"}),
])
def test_no_forbidden_imports(package, forbidden):
    assert not imports(package) & forbidden, f"{package} imports {imports(package) & forbidden}"


def test_manual_computes_gradients_where_torch_cannot_be_imported():
    code = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("torch was importable")
import numpy as np, manual
rng = np.random.default_rng(0)
p = {"Wxh": rng.normal(size=(4, 3)), "Whh": rng.normal(size=(4, 4)) / 2, "bh": np.zeros(4),
     "Why": rng.normal(size=(2, 4)), "by": np.zeros(2)}
g = manual.gradients(p, rng.normal(size=(5, 2, 3)), rng.normal(size=(2, 2)))
assert g["h"].shape == (5, 2, 4) and np.isfinite(g["Whh"]).all()
assert "torch" not in sys.modules or sys.modules["torch"] is None
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
