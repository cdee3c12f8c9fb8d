"""Candidates that support only some configurations, as most kernels do: they say so with oracle.Unsupported."""

import manual
import oracle


def one_layer_only(config, state_dict, input, hx=None, **kw):
    """Raises Unsupported past one layer, else manual's answer."""
    if config.get("num_layers", 1) > 1:
        raise oracle.Unsupported("num_layers > 1")
    return manual.module_gradients(config, state_dict, input, hx, **kw)


def declares_no_projection(config, state_dict, input, hx=None, **kw):
    """Declares what it supports instead of raising: never called on a projected LSTM."""
    assert not config.get("proj_size"), "called on a case it declared unsupported"
    return manual.module_gradients(config, state_dict, input, hx, **kw)


declares_no_projection.supports = lambda case: not case.get("proj_size") or "proj_size"


def supports_nothing(config, state_dict, input, hx=None, **kw):
    raise oracle.Unsupported("a kernel for another cell")


_CALLS = []


def unsupported_on_second_call(config, state_dict, input, hx=None, **kw):
    """Supports a case, then not the same case: inconsistent, and so a failure."""
    _CALLS.append(1)
    if len(_CALLS) % 2 == 0:
        raise oracle.Unsupported("changed its mind")
    return manual.module_gradients(config, state_dict, input, hx, **kw)


def one_layer_wrong_elsewhere(config, state_dict, input, hx=None, **kw):
    """Unsupported past one layer; on one layer, hx's gradient dropped (a wrong answer is never a skip)."""
    g = one_layer_only(config, state_dict, input, hx, **kw)
    g["hx"] = g["hx"] * 0
    return g


def bad_declaration(config, state_dict, input, hx=None, **kw):
    return manual.module_gradients(config, state_dict, input, hx, **kw)


bad_declaration.supports = lambda case: 1


def required_only(config, state_dict, input, hx=None, **kw):
    """manual's answer without the optional per-step tensors (h_l0, c_l0, gates): what most kernels return."""
    g = manual.module_gradients(config, state_dict, input, hx, **kw)
    return {k: v for k, v in g.items() if k.startswith(("weight_", "bias_")) or k in ("input", "hx", "cx")}


def honours_needs(config, state_dict, input, hx=None, *, needs_input_grad=None, **kw):
    """Returns garbage for the gradients the case says it does not need, as a kernel that skips them may."""
    g = manual.module_gradients(config, state_dict, input, hx, **kw)
    for name, key in (("input", "input"), ("hx", "hx"), ("cx", "hx")):
        if needs_input_grad is not None and not needs_input_grad[key] and name in g:
            g[name] = g[name] * 0 + 7.0
    return g


_ONCE = []


def wrong_once(config, state_dict, input, hx=None, **kw):
    """Wrong on its first two calls (one case) and right ever after: a race, or state kept between calls."""
    g = manual.module_gradients(config, state_dict, input, hx, **kw)
    _ONCE.append(1)
    if len(_ONCE) <= 2:
        g["hx"] = g["hx"] * 0
    return g
