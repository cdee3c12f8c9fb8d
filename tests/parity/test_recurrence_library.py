"""The public library's own naive recurrent references (fla-core, the flash-linear-attention kernels' package),
made candidates and judged by this oracle: an independent check of the convention this project follows (the
decay first, the delta correction from the decayed state, o after the update) and of its truth.

The library's naive references compute in float32 whatever they are given, so they are judged on the float32
cases they cover (unpacked, no L2 norm inside; β per value channel, grouped value heads and a scale other than
K^-1/2 where the reference takes them; T up to 20), by the same bound as any float32 candidate. Their files are
loaded one by one, by path, without importing the package (whose kernels need Triton): they need torch and einops
only.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

import oracle
from oracle.cases import builtin_cases, select

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from recurrence_wrapper import gradients_through  # noqa: E402 - the documented wrapper's helper


def _naive(package: str):
    """fla/ops/<package>/naive.py as a module, or skip with the reason."""
    pytest.importorskip("einops", reason="fla-core's naive references need einops (the test extra installs both)")
    spec = importlib.util.find_spec("fla")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("fla-core (the library's naive references) is not installed: pip install fla-core")
    path = Path(spec.submodule_search_locations[0]) / "ops" / package / "naive.py"
    if not path.is_file():
        pytest.skip(f"fla-core has no {path}")
    module_spec = importlib.util.spec_from_file_location(f"fla_naive_{package}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _head_first(x):
    return x.transpose(1, 2)


# variant → (the naive file, a forward (o, final_state) from the case's torch tensors, the options it takes: β per
# value channel, grouped value heads, a scale other than K^-1/2)
ADAPTERS = {
    "linear_attention": ("linear_attn", lambda m, a: m.naive_recurrent_linear_attn(
        a["q"], a["k"], a["v"], scale=a["scale"], initial_state=a["initial_state"], output_final_state=True),
        ("scale2",)),
    "gla_head": ("simple_gla", lambda m, a: m.naive_recurrent_simple_gla(
        a["q"], a["k"], a["v"], a["g"], scale=a["scale"], initial_state=a["initial_state"], output_final_state=True),
        ("scale2",)),
    "gla": ("gla", lambda m, a: m.naive_recurrent_gla(  # its scale is K^-1/2, the cases' own
        a["q"], a["k"], a["v"], a["g"], initial_state=a["initial_state"], output_final_state=True), ()),
    "delta_rule": ("delta_rule", lambda m, a: (lambda o, s: (_head_first(o), s))(*m.delta_rule_recurrence(
        *(_head_first(a[n]) for n in ("q", "k", "v", "beta")), initial_state=a["initial_state"],
        output_final_state=True)), ("betav",)),
    "gated_delta_rule": ("gated_delta_rule", lambda m, a: m.naive_recurrent_gated_delta_rule(
        a["q"], a["k"], a["v"], a["beta"], a["g"], scale=a["scale"], initial_state=a["initial_state"],
        output_final_state=True), ("scale2",)),
    "kda": ("kda", lambda m, a: m.naive_recurrent_kda(
        a["q"], a["k"], a["v"], a["g"], a["beta"], scale=a["scale"], initial_state=a["initial_state"],
        output_final_state=True), ("gv2", "scale2")),
}


def candidate(module, forward):
    """manual.recurrence_gradients' signature around the library's forward: autograd through it, by the kernel
    wrapper's own helper (examples/recurrence_wrapper.py)."""
    def gradients(variant, q, k, v, g, beta, *, scale, initial_state, cu_seqlens, use_qk_l2norm, grad_o,
                  grad_final_state, wrt):
        given = {"q": q, "k": k, "v": v, "g": g, "beta": beta, "initial_state": initial_state}
        return gradients_through(lambda x: forward(module, {**x, "scale": scale}), given, wrt, grad_o,
                                 grad_final_state)
    return gradients


@pytest.mark.parametrize("variant", list(ADAPTERS))
def test_the_library_naive_reference_passes_the_float32_cases_it_covers(variant):
    package, forward, takes = ADAPTERS[variant]
    module = _naive(package)
    expression = " and ".join([f"recurrence and {variant} and float32 and not packed and not l2norm",
                               "not T64 and not T65",  # a loop is a loop: the long ones add time, not convention
                               *(f"not {o}" for o in ("betav", "gv2", "scale2") if o not in takes)])
    cases = select(builtin_cases(("float32",)), expression)
    assert cases and all(c.variant == variant for c in cases), expression
    result = oracle.check(candidate(module, forward), cases, isolate=False)
    assert result.ok and not any(r.skipped for r in result.results), result.text()
