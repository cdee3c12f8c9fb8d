"""One row per cell: everything the project knows of a cell beside its equations.

A cell's equations are its file in ``manual/cells/`` (forward and backward,
beside the derivation) and its step function in ``reference/module.py``
(unrolled under autograd by shared code). Everything else asks its row
here: the configuration's checks and shapes (``contract.spec``), the
stack, the layouts, the built-in matrix, ``bptt derive --cell``, the
benchmarks' groups and the mutant tests' parametrisation. Nothing else
names a cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Cell:
    mode: str  # config["mode"]: torch.nn.RNNBase's name, or the project's for a cell torch has no module for
    file: str  # its module in manual/cells/ (and the name of its reference step)
    gates: int  # rows of weight_ih per hidden unit (G)
    step_kinds: tuple[str, ...]  # its per-step tensors, each f"{kind}_l{k}{suffix}" (T, B, ·)
    nonlinearities: tuple[str, ...] = ("tanh",)  # config["nonlinearity"]: the choices, the first the default
    torch_module: str | None = None  # torch.nn's module for it; None: none (its reference is the unrolled step)
    onnx_gates: tuple[int, ...] | None = None  # ONNX's gate order, as indices of ours; None: no ONNX operator
    onnx_letters: str = ""  # ONNX's names of its gate blocks, in its order (a report in ONNX's layout says them)
    recurrent: str = "matrix"  # weight_hh: "matrix" (G·H, P), "diagonal" (G·H,): each unit sees its own past,
    # "heads" (G·H, H / num_heads): block-diagonal, each head's units see their own head's past, or
    # "none": no weight_hh and no bias_hh (the gates read x_t alone; the state enters only the carry)
    carried: tuple[str, ...] = ("h",)  # the states carried from step to step, h first; with more than one, hx is
    # their tuple (torch's LSTM pair (h0, c0)), and each state s has its final s_n, its upstream grad_{s}n and the
    # gradient {s}x of its initial state
    nonnegative: tuple[str, ...] = ()  # carried states whose initial value must be ≥ 0 (the sLSTM's normaliser n)
    norms: tuple[tuple[str, str], ...] = ()  # its own parameters beyond torch's, (name, "gates" (G·H,) | "hidden"
    # (H,)), after torch's in the state_dict; a name with "bias" only when config["bias"] (the LayerNorm-LSTM's)
    normalised_input: bool = False  # its first operation on x_t W_ihᵀ is a norm: the stack hands it the product
    # without bias_ih (that norm's β), and the cell returns bias_ih's gradient
    options: tuple[str, ...] = ()  # config keys beyond torch.nn.RNN's that this cell takes
    forms: tuple[dict, ...] = field(default=({},))  # the built-in matrix's forms: config changes from the default
    full_matrix: bool = False  # the built-in matrix takes its whole parity matrix (else B = 3, upstream h_n/both)
    size_sweep: bool = False  # the built-in matrix adds one layer at more sizes (oracle.cases.module.SWEEP)
    benchmark: bool = True  # a benchmark group of one layer of its own (the Elman cell has the seed model's)
    equations: tuple[tuple[str, str], ...] = ()  # bptt derive --cell: (step kind, the equation that makes it)
    totals: tuple[tuple[str, str], ...] = ()  # bptt derive --cell: (parameter, the sum over steps that makes it)

    @property
    def states(self) -> tuple[str, ...]:
        """The per-step kinds that are states (h, c, n); the others are pre-activations."""
        return tuple(k for k in self.step_kinds if k in self.carried)

    @property
    def cell_state(self) -> bool:
        """More than h is carried (hx is a tuple)."""
        return len(self.carried) > 1


_ELMAN = ("h", "z")
LSTM_EQUATIONS = (
    ("h", "dL/dh{t} = dL/doutput{t} + dL/da{t1} W_hh          (through the future)"),
    ("c", "dL/dc{t} = dL/dc{t1} ⊙ f{t1} + dL/dh{t} ⊙ o{t} ⊙ (1 − tanh² c{t})"),
    ("gate_i", "dL/da_i{t} = dL/dc{t} ⊙ g{t} ⊙ i{t}(1 − i{t})"),
    ("gate_f", "dL/da_f{t} = dL/dc{t} ⊙ c{t0} ⊙ f{t}(1 − f{t})"),
    ("gate_g", "dL/da_g{t} = dL/dc{t} ⊙ i{t} ⊙ (1 − g{t}²)"),
    ("gate_o", "dL/da_o{t} = dL/dh{t} ⊙ tanh(c{t}) ⊙ o{t}(1 − o{t})"))
GRU_EQUATIONS = (
    ("h", "dL/dh{t} = dL/doutput{t} + dL/dh{t1} ⊙ z{t1} + (dL/da_r, dL/da_z, r ⊙ dL/da_n){t1} W_hh"),
    ("gate_n", "dL/da_n{t} = dL/dh{t} ⊙ (1 − z{t}) ⊙ (1 − n{t}²)"),
    ("gate_z", "dL/da_z{t} = dL/dh{t} ⊙ (h{t0} − n{t}) ⊙ z{t}(1 − z{t})"),
    ("gate_r", "dL/da_r{t} = dL/da_n{t} ⊙ (h{t0} W_hnᵀ + b_hn) ⊙ r{t}(1 − r{t})"))
INDRNN_EQUATIONS = (
    ("h", "dL/dh{t} = dL/doutput{t} + dL/dz{t1} ⊙ u          (through the future: u is a vector)"),
    ("z", "dL/dz{t} = dL/dh{t} ⊙ act'(z{t})"))

MIN_TOTALS = (("weight_ih", "dW_ih = Σ_t dL/da_tᵀ x_t   (no recurrent weights: the gates read x_t alone)"),
              ("bias_ih", "db_ih = Σ_t Σ_b dL/da_t"))
MINGRU_EQUATIONS = (
    ("h", "dL/dh{t} = dL/doutput{t} + dL/dh{t1} ⊙ (1 − z{t1})          (through the future)"),
    ("gate_z", "dL/da_z{t} = dL/dh{t} ⊙ (h̃{t} − h{t0}) ⊙ z{t}(1 − z{t})"),
    ("gate_h", "dL/da_h{t} = dL/dh{t} ⊙ z{t} ⊙ g′(a_h{t})"))
MINLSTM_EQUATIONS = (
    ("h", "dL/dh{t} = dL/doutput{t} + dL/dh{t1} ⊙ f′{t1}          (through the future; f′ = f / (f + i))"),
    ("gate_f", "dL/da_f{t} = dL/dh{t} ⊙ (h{t0} − h̃{t}) ⊙ i{t} / (f{t} + i{t})² ⊙ f{t}(1 − f{t})"),
    ("gate_i", "dL/da_i{t} = dL/dh{t} ⊙ (h̃{t} − h{t0}) ⊙ f{t} / (f{t} + i{t})² ⊙ i{t}(1 − i{t})"),
    ("gate_h", "dL/da_h{t} = dL/dh{t} ⊙ i′{t} ⊙ g′(a_h{t})"))

LAYER_NORM_EPS = 1e-5  # the LayerNorm-LSTM's ε in 1 / √(var + ε): torch.nn.LayerNorm's default and the fused libraries'
LNLSTM_EQUATIONS = (
    ("h", "dL/dh{t} = dL/doutput{t} + LN_hh′(dL/da{t1} ⊙ γ_hh) W_hh          (through the future)"),
    ("c", "dL/dc{t} = dL/dc{t1} ⊙ f{t1} + LN_c′(dL/dh{t} ⊙ o{t} ⊙ (1 − tanh² y_c{t}) ⊙ γ_c)   "
          "(LN′(u) = r(u − mean u − v̂ mean(u ⊙ v̂)))"),
    ("gate_i", "dL/da_i{t} = dL/dc{t} ⊙ g{t} ⊙ i{t}(1 − i{t})"),
    ("gate_f", "dL/da_f{t} = dL/dc{t} ⊙ c{t0} ⊙ f{t}(1 − f{t})"),
    ("gate_g", "dL/da_g{t} = dL/dc{t} ⊙ i{t} ⊙ (1 − g{t}²)"),
    ("gate_o", "dL/da_o{t} = dL/dh{t} ⊙ tanh(y_c{t}) ⊙ o{t}(1 − o{t})"))
SLSTM_EQUATIONS = (
    ("h", "dL/dh{t} = dL/doutput{t} + dL/da{t1} R          (through the future; R block-diagonal by head)"),
    ("c", "dL/dc{t} = dL/dc{t1} ⊙ f′{t1} + dL/dh{t} ⊙ o{t} / n{t}          (f′, i′: the stabilised gates)"),
    ("n", "dL/dn{t} = dL/dn{t1} ⊙ f′{t1} − dL/dh{t} ⊙ o{t} ⊙ c{t} / n{t}²"),
    ("gate_i", "dL/dã_i{t} = (dL/dc{t} ⊙ z{t} + dL/dn{t}) ⊙ i′{t}          (m held fixed: no gradient through it)"),
    ("gate_f", "dL/dã_f{t} = (dL/dc{t} ⊙ c{t0} + dL/dn{t} ⊙ n{t0}) ⊙ f′{t} ⊙ (1 − σ(ã_f{t}))   (exp: no last factor)"),
    ("gate_z", "dL/dã_z{t} = dL/dc{t} ⊙ i′{t} ⊙ (1 − z{t}²)"),
    ("gate_o", "dL/dã_o{t} = dL/dh{t} ⊙ c{t} / n{t} ⊙ o{t}(1 − o{t})"))

CELLS = {c.mode: c for c in (
    Cell("RNN_TANH", "elman", 1, _ELMAN, ("tanh",), "RNN", (0,), options=("zoneout",), forms=({}, {"zoneout": True}),
         full_matrix=True, benchmark=False),
    Cell("RNN_RELU", "elman", 1, _ELMAN, ("relu",), "RNN", (0,), options=("zoneout",), full_matrix=True,
         benchmark=False),
    Cell("LSTM", "lstm", 4, ("h", "c", "gate_i", "gate_f", "gate_g", "gate_o"), ("tanh",), "LSTM", (0, 3, 1, 2),
         onnx_letters="iofc", carried=("h", "c"), options=("proj_size", "zoneout"),
         forms=({}, {"proj_size": 2}, {"zoneout": True}), size_sweep=True,
         equations=LSTM_EQUATIONS,
         totals=(("weight_hh", "dW_hh = Σ_t dL/da_tᵀ h_{t−1}"), ("weight_ih", "dW_ih = Σ_t dL/da_tᵀ x_t"),
                 ("bias_hh", "db_hh = Σ_t dL/da_t (= db_ih)"))),
    Cell("GRU", "gru", 3, ("h", "gate_r", "gate_z", "gate_n"), ("tanh",), "GRU", (1, 0, 2), onnx_letters="zrh",
         options=("linear_before_reset", "zoneout"), forms=({}, {"linear_before_reset": False}, {"zoneout": True}),
         size_sweep=True,
         equations=GRU_EQUATIONS,
         totals=(("weight_hh", "dW_hh = Σ_t dL/da_tᵀ h_{t−1}   (the n rows pair with r ⊙ ah_n's h)"),
                 ("weight_ih", "dW_ih = Σ_t dL/da_tᵀ x_t"),
                 ("bias_hh", "db_hh = Σ_t (dL/da_r, dL/da_z, r ⊙ dL/da_n)"),
                 ("bias_ih", "db_ih = Σ_t (dL/da_r, dL/da_z, dL/da_n)   (b_hn's and b_in's differ)"))),
    Cell("INDRNN", "indrnn", 1, _ELMAN, ("tanh", "relu"), recurrent="diagonal",
         forms=({}, {"nonlinearity": "relu"}), equations=INDRNN_EQUATIONS,
         totals=(("weight_hh", "du = Σ_t Σ_b dL/dz_t ⊙ h_{t−1}   (a vector: the diagonal alone)"),
                 ("weight_ih", "dW_ih = Σ_t dL/dz_tᵀ x_t"), ("bias_hh", "db_hh = Σ_t Σ_b dL/dz_t (= db_ih)"))),
    Cell("MINGRU", "mingru", 2, ("h", "gate_z", "gate_h"), recurrent="none", equations=MINGRU_EQUATIONS,
         totals=MIN_TOTALS),
    Cell("MINLSTM", "minlstm", 3, ("h", "gate_f", "gate_i", "gate_h"), recurrent="none",
         equations=MINLSTM_EQUATIONS, totals=MIN_TOTALS),
    Cell("SLSTM", "slstm", 4, ("h", "c", "n", "gate_i", "gate_f", "gate_z", "gate_o"), recurrent="heads",
         carried=("h", "c", "n", "m"), nonnegative=("n",), options=("num_heads", "forget_gate"),
         forms=({}, {"num_heads": 2}, {"forget_gate": "exp"}), equations=SLSTM_EQUATIONS,
         totals=(("weight_hh", "dR_k = Σ_t dL/da_{t,k}ᵀ h_{t−1,k}   (head k's block: its units' rows, its units' h)"),
                 ("weight_ih", "dW_ih = Σ_t dL/da_tᵀ x_t"), ("bias_hh", "db_hh = Σ_t Σ_b dL/da_t (= db_ih)"))),
    Cell("LNLSTM", "lnlstm", 4, ("h", "c", "gate_i", "gate_f", "gate_g", "gate_o"), carried=("h", "c"),
         norms=(("ln_ih_weight", "gates"), ("ln_hh_weight", "gates"), ("ln_c_weight", "hidden"),
                ("ln_c_bias", "hidden")), normalised_input=True, equations=LNLSTM_EQUATIONS,
         totals=(("weight_hh", "dW_hh = Σ_t LN_hh′(dL/da_t ⊙ γ_hh)ᵀ h_{t−1}"),
                 ("weight_ih", "dW_ih = Σ_t LN_ih′(dL/da_t ⊙ γ_ih)ᵀ x_t"),
                 ("ln_ih_weight", "dγ_ih = Σ_t Σ_b dL/da_t ⊙ v̂_ih,t   (and dγ_hh with v̂_hh,t)"),
                 ("bias_ih", "dβ_ih = db_ih = Σ_t Σ_b dL/da_t (= db_hh: both norms' β add into a_t)"),
                 ("ln_c_weight", "dγ_c = Σ_t Σ_b dL/dy_c,t ⊙ ĉ_t    dβ_c = Σ_t Σ_b dL/dy_c,t"))),
)}
CELL_FILES = {c.file: c for c in reversed(CELLS.values())}  # a file's first row: `bptt derive --cell FILE`


__all__ = ["CELLS", "CELL_FILES", "Cell"]
