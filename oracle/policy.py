"""The tolerance policy: every bound and threshold the oracle judges by, each with its reason.

Nothing else in the project defines a tolerance; ``oracle.compare`` applies
these, ``oracle.truth`` computes ``amp`` and ``sens``, the docs state the
formula once and point here.

How a gradient is judged against the float64 truth:

* Each tensor is compared on its own scale: max|truth|. An initial state's
  gradient (the seed's ``h0``, a module's ``hx`` and ``cx`` row by row) is
  step 0 of its recurrence, and takes the scale of the steps after it. Per-step tensors
  (``h``, ``z``, and ``x`` when it has a time axis) are scaled step by step,
  because BPTT's gradients shrink or grow along t and one scale for the whole
  tensor would hide the steps where they are small. Step t's scale is the
  largest |truth| at any step s ≥ t: the backward pass computes t = T … 1, a
  rounding error made at step s is eps times what was computed there, and it
  reaches step t through the same Jacobians as the gradient itself. Scaling by
  step t alone would ask for more accuracy than the float format holds where
  the gradient vanishes (seen: 2e-12 relative at the early steps of a
  17-step float64 case, both implementations right).
* The normalised error of an element is |got − truth| / scale. Before the
  adjustments below, an element passes when its normalised error is within

      tol = C[dtype] · eps(dtype) · √(T · K)

  Why this form: every entry is a chain of T recurrence steps, each a sum of
  about K products (K = max(B, D, H, O), the inner sizes of the matrix
  products), and rounding errors of such sums grow like eps·√(count) when they
  are independent (Higham, "Accuracy and Stability of Numerical Algorithms",
  §2.8, the probabilistic bound). C is the safety factor over that typical
  growth: two implementations that round differently each carry such an error,
  and a sum may cancel down to a fraction of its terms' size.
* Rounding errors are relative to the terms a value is made from, not to the
  value: a sum whose terms are larger than its result cancels. The backward
  pass cancels in two places whatever code computes it: the loss's
  fy(o) − y (p − onehot when the softmax is confident) and act'(z) taken from
  the rounded h (the seed's 1 − h², off by about eps where a tanh unit
  saturates and the true act' is 1e-5). So each truth comes with an
  amplification ``amp`` ≥ 1 (``oracle.truth``), and an element's bound is
  tol · amp · scale, never above MAX_TOL · scale (past that a case cannot tell
  right from wrong). (Seen without it, both implementations right: 1.5e-11 in
  float64 for one saturated tanh unit, 2e-11 for a confident softmax.)
* The forward pass cancels too (z_t near 0 from terms of order 1 under relu),
  and that depends on the inputs, not on the code. So the truth also comes
  with a sensitivity: how far each float64 entry moves, per unit of eps, when
  every input moves by one rounding error. An element is also allowed
  COND_FACTOR · eps(dtype) · sensitivity.
* In reduced precision an ill-conditioned case (a recurrence near its edge of
  stability, vanishing steps underflowing) can exceed any fixed bound while
  the code is right; then autograd in the same dtype is just as far off. So
  when autograd's own error in that dtype is given (computed by the checker
  from the case's pristine inputs, before any candidate runs), a tensor also
  passes whose error is at most REF_FACTOR times autograd's.

All of it, in one formula (``BOUND``; ``allowed_error`` computes it, the
docs/policy.md and every golden file's metadata quote it):

    |got − truth| ≤ min( max(C·eps·√(T·K)·amp, REF_FACTOR·autograd_err)·scale
                         + COND_FACTOR·eps·sens ,  MAX_TOL·scale )

eps is the eps of the *case's* dtype, the precision the candidate was asked
to compute in, never of what it hands back: a float64 case is judged by the
float64 bound even when the candidate returns float16 (or bfloat16 zeros).
Nothing the candidate returns widens its own bound, and no allowance, the
autograd-relative one included, lets the bound past MAX_TOL·scale.

Mistakes in a derivation give normalised errors of order 1; the bound at the
largest built-in case (T = 256, K = 8) is 6.4e-13 in float64 and 3.5e-4 in
float32, so the two never meet.
"""

from __future__ import annotations

import numpy as np

EPS = {
    "float64": float(np.finfo(np.float64).eps),
    "float32": float(np.finfo(np.float32).eps),
    "float16": float(np.finfo(np.float16).eps),
    "bfloat16": 2.0**-7,
}
# C in tol = C · eps · √(T · K), keyed by dtype. The √(T·K) growth is the
# typical one; on top of it comes cancellation, which no bound on the code can
# remove: a sum whose terms are larger than its result (z_t near 0 under relu,
# p − onehot when the softmax is confident, o − y when the fit is close) has an
# error of eps times its terms, not its result. Worst seen over the built-in
# matrix and the test matrix, manual against autograd: 21·eps·√(TK) in float64
# (one-to-many/identity/cross_entropy/T17-B1), 12 in float32 (relu, z = 0.022
# from terms of order 1). C = 64 leaves 3× over that and still sits 10⁹× below
# the order-1 errors of a wrong derivation in float64, 10³× in float32.
C = {"float64": 64.0, "float32": 64.0, "float16": 64.0, "bfloat16": 64.0}
MAX_TOL = 1e-2  # a looser bound cannot tell a right derivation (error ≪ 1) from a wrong one (error ~ 1)
# The sensitivity is measured with random input perturbations of one eps,
# while rounding inside the code perturbs intermediate sums by up to √K eps
# and the random draws can miss the worst direction: 16 covers both.
COND_FACTOR = 16.0
REF_FACTOR = 4.0  # "no worse than autograd in the same dtype", with room for its own luck

BOUND = ("min(max(C[dtype]*eps(dtype)*sqrt(T*K)*amp, REF_FACTOR*autograd_err)*scale + COND_FACTOR*eps(dtype)*sens, "
         "MAX_TOL*scale), dtype = the case's dtype; bfloat16 and float16: "
         "min(max(LOW_FACTOR*autograd_err, LOW_FLOOR*eps(dtype)), LOW_CAP)*scale")

# ---------------------------------------------------------------- low precision (oracle.precision)

# bfloat16 and float16 cases are judged as kernel projects judge them: against the same computation done by
# autograd in that dtype, both measured against the float64 truth on the same (exactly representable) inputs. At
# these precisions C·eps·√(T·K) is past MAX_TOL at every size, so the main bound cannot speak; autograd's own
# error is what the dtype allows on this case. A tensor's normalised error may be at most
#     min(max(LOW_FACTOR · autograd_err, LOW_FLOOR · eps(dtype)), LOW_CAP).
# LOW_FACTOR: a kernel rounds in another order than autograd (fused gates, float32 accumulation, another
# blocking); the error bound of a sum does not depend on its order, but the error drawn does, by about 2× either
# way; 4 is twice that, under the 10× of a candidate whose error is 10× autograd's (tests/adversarial/
# test_low_precision.py). LOW_FLOOR: where autograd happens to land within a fraction of an ulp, a correct
# implementation rounding in another order need not: manual in the dtype, on the 48 built-in low-precision cases,
# reaches 2.3 eps on a tensor where autograd has 0.44 eps (float16, a GRU gate; bfloat16: 1.1 eps against 0.19), so
# a floor under about 2.5 eps fails correct code; 4 eps leaves room over that. Below the floor a candidate 10× as
# far off as autograd passes: there the dtype itself cannot tell it from a correct one rounding otherwise. LOW_CAP:
# past 0.1 a right derivation computed in bfloat16 (a few percent at most on these cases) and a wrong one (order 1)
# meet.
LOW_FACTOR = 4.0
LOW_FLOOR = 4.0
LOW_CAP = 0.1

# ---------------------------------------------------------------- beside the bound

# A golden file's stored truth against the truth recomputed from its own inputs, relative to the tensor's largest
# entry: far above what another BLAS or torch version changes (1e-13 at most in the built-in cases), far below any
# altered gradient. A file past it is refused (its SHA-256 digests prove integrity, not origin).
GOLDEN_AGREE = 1e-8

# Central finite differences of the loss in float64 (oracle.fd), a check that owes nothing to autograd. Truncation
# error ε²/6·|L'''| ≈ 1e-13 for O(1) derivatives, rounding error ≈ eps·|L|/ε ≈ 2e-16·|L|/1e-6 = 2e-10·|L|; 1e-7
# relative to max(|gradient|, |L|, 1) leaves 500× over their sum, while a wrong derivative is off by order 1.
FD_STEP = 1e-6
FD_TOL = 1e-7
FD_MAX_PARAMS = 400  # finite differences at export on cases with at most this many entries (two losses each)

# κ_loss (oracle.truth) weighs each batch row's own cancellation only where one row cancels over this many times
# what the rows taken together say: C's margin (3× over the worst seen) covers less.
ROW_KAPPA_FACTOR = 2.0

# The largest amplification: past MAX_TOL / (C·eps(float64)·√(T·K)) ≈ 7e11 every amp already meets the MAX_TOL cap,
# so this changes no bound; it keeps a product of κs finite where it would overflow (a saturated unit beside a
# confident softmax, found by hypothesis), since an infinite amp times a zero scale would be NaN.
AMP_CAP = 1e100

# The benchmarks' bfloat16 correctness check (benchmarks/test_bptt.py) differs from the oracle's: at benchmark
# sizes bfloat16's own rounding (autograd's normalised error ≈ 1.2e-2) is past MAX_TOL, so there a tensor passes
# when it is no further from the truth than REF_FACTOR × autograd's bfloat16 error, capped at this (a wrong
# derivation, error ~1, cannot hide behind a poor autograd).
BENCH_BF16_CAP = 0.1


__all__ = ["AMP_CAP", "BENCH_BF16_CAP", "BOUND", "C", "COND_FACTOR", "EPS", "FD_MAX_PARAMS", "FD_STEP", "FD_TOL",
           "GOLDEN_AGREE", "LOW_CAP", "LOW_FACTOR", "LOW_FLOOR", "MAX_TOL", "REF_FACTOR", "ROW_KAPPA_FACTOR"]
