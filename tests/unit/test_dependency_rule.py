"""The dependency rule (docs/design.md): manual runs with NumPy alone; reference never sees manual."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


# ---------------------------------------------------------------- oracle's rooms

PROJECT = ("contract", "manual", "reference", "oracle")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def module_level_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of each import at a module's top level (not inside a function: those are deliberate, lazy)."""
    out = []
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return out


def all_imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module, [a.name for a in node.names]


def test_oracle_has_no_import_cycle():
    graph = {}
    for path in (ROOT / "oracle").rglob("*.py"):
        # importing a.b.c runs a/b/__init__ first (oracle/__init__, the API, aside); a package's own is no cycle
        me = module_name(path)
        mine = {me, *(me.rsplit(".", j)[0] for j in range(1, me.count(".") + 1))}
        graph[me] = {".".join(m.split(".")[:k]) for m, _ in module_level_imports(path) if m.startswith("oracle")
                     for k in range(2, m.count(".") + 2)} - mine
    state: dict[str, int] = {}

    def visit(m, trail):
        if state.get(m) == 1:
            raise AssertionError("import cycle: " + " → ".join(trail + [m]))
        if state.get(m) == 2 or m not in graph:
            return
        state[m] = 1
        for n in graph[m]:
            visit(n, trail + [m])
        state[m] = 2

    for m in graph:
        visit(m, [])


@pytest.mark.parametrize("package", PROJECT)
def test_no_module_imports_another_modules_private_names(package):
    for path in (ROOT / package).rglob("*.py"):
        for module, names in all_imports(path):
            if module.split(".")[0] in PROJECT and module != module_name(path):
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                assert not private, f"{module_name(path)} imports {private} from {module}"


def test_no_export_of_oracle_shadows_a_submodule():
    import oracle

    rooms = {p.stem for p in (ROOT / "oracle").glob("*.py")} | {p.name for p in (ROOT / "oracle").iterdir()
                                                                 if (p / "__init__.py").exists()}
    assert not set(oracle.__all__) & rooms, set(oracle.__all__) & rooms


def test_importing_oracle_does_not_import_torch():
    code = "import sys, oracle, oracle.cli, oracle.checker.isolate; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stdout + out.stderr


# ---------------------------------------------------------------- one error base

INTERNAL = {"oracle.checker.wire.ReplyError"}  # a worker's reply the checker turns into that case's failure


def test_every_refusal_derives_from_one_base():
    """No bare ``raise ValueError(…)``/``TypeError(…)``, and every error class of the project that is one is a
    ``contract.errors.Refusal`` (why and remedy as data, the message built once)."""
    import importlib
    import inspect

    from contract.errors import Refusal

    for package in PROJECT:
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "__main__.py":
                continue
            text = path.read_text()
            assert "raise ValueError(" not in text and "raise TypeError(" not in text, f"{path}: raise BadValue"
            module = importlib.import_module(module_name(path))
            for _, cls in inspect.getmembers(module, inspect.isclass):
                where = f"{cls.__module__}.{cls.__qualname__}"
                if cls.__module__ == module.__name__ and issubclass(cls, (ValueError, TypeError)) and \
                        where not in INTERNAL:
                    assert issubclass(cls, Refusal), f"{where} is a ValueError/TypeError but not a Refusal"
