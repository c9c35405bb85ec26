"""Linear CKA between one parent representation and many candidates, in minibatches.

Layer pruning and everything-at-once score each candidate model by the linear CKA
between its representation and the parent's (DESIGN.md, "CKA"). The parent is fixed for
a whole iteration, so `CKAReference` computes its terms once; each candidate then costs
one pass over its features:

    ref = CKAReference(parent_features, debiased=False, backend="auto")
    ref.score(candidate_features)            # one array, or an iterable of row batches
    acc = ref.accumulator(); acc.add(batch) ...; acc.value()

Rows of a candidate's i-th sample are compared with the parent's i-th sample, so batches
must arrive in the parent's row order (their sizes need not match the parent's).

Two estimators: biased CKA (Kornblith et al. 2019, the papers' choice) and debiased CKA
(the unbiased HSIC of Song et al. 2012, as used by Nguyen et al. 2021). Two ways to
compute either, chosen per candidate by flop count (`choose_path`):

- feature path: accumulate XᵀX, XᵀY (Y the parent's centred features) and, for the
  debiased estimator, column sums, per-sample squared norms and their products with X.
  Streams: nothing of size n is kept.
- Gram path: keep the candidate's rows, then one XXᵀ and one reduction against the
  parent's cached, centred (H or U), normalised Gram matrix.

Numerics (measured, DESIGN.md): features are centred in float64 before any product
(centring a float32 Gram lost 0.74 at an activation offset of 1000); every product and
reduction is float64 (so cuBLAS never uses TF32, which applies to float32 GEMMs only);
the result divides by the product of the two norms.

What it does not do: no kernels other than linear, no float32 products (on CPU they would
halve the time but debiased terms cancel by a factor of the width), no multi-GPU, and no
choice of which representation to compare — callers pass features.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from onnxprune.errors import OnnxPruneError
from onnxprune.runtime.array_backend import ArrayBackend, get_backend

PATHS = ("auto", "feature", "gram")


def choose_path(n: int, width: int, parent_width: int) -> str:
    """The cheaper computation for `n` samples, candidate width p, parent width q.

    feature: SYRK XᵀX (n·p² flops) + GEMM XᵀY (2·n·p·q)  = n·p·(p + 2q)
    gram:    SYRK XXᵀ (n²·p) + O(n²) reductions           ≈ n·p·n
    so the feature path wins exactly when p + 2q < n.
    """
    return "feature" if width + 2 * parent_width < n else "gram"


def path_flops(path: str, n: int, width: int, parent_width: int) -> float:
    """Flops of one candidate's products on `path` (2 per multiply-add, symmetric products
    counted once, as SYRK does them); reductions are left out. For benchmarks."""
    if path == "feature":
        return float(n) * width * (width + 2 * parent_width)
    return float(n) * n * width


def linear_cka(x: Any, y: Any, *, debiased: bool = False, backend: str | ArrayBackend = "auto") -> float:
    """CKA of two feature arrays [n, ...] (one-off; reuse a `CKAReference` for many)."""
    return CKAReference(y, debiased=debiased, backend=backend).score(x)


class CKAReference:
    """The parent's side of CKA, computed once and shared by every candidate."""

    def __init__(
        self,
        parent: Any,
        *,
        debiased: bool = False,
        backend: str | ArrayBackend = "auto",
        path: str = "auto",
    ):
        self.backend = get_backend(backend)
        self.debiased = bool(debiased)
        self.path = _check_path(path)
        xp = self.backend.xp
        y = xp.concatenate([_as_rows(self.backend, b, "parent") for b in _batches(parent, "parent")])
        self.n, self.width = int(y.shape[0]), int(y.shape[1])
        if not bool(xp.isfinite(y).all()):
            raise OnnxPruneError("parent features contain NaN or Inf")
        needed = 4 if self.debiased else 2
        if self.n < needed:
            kind = "debiased" if self.debiased else "biased"
            raise OnnxPruneError(f"{kind} CKA needs at least {needed} samples, the parent has {self.n}")
        # Only one side needs centring (⟨HKH, HLH⟩ = ⟨K, HLH⟩ and the U-statistic is
        # translation invariant), and this is the side computed once.
        self.y = y - y.mean(axis=0)
        self.y_sq_norms = (self.y * self.y).sum(axis=1) if self.debiased else None
        self._gram_hat: Any = None
        self.norm = self._self_norm()

    def accumulator(self, path: str | None = None) -> "CKAAccumulator":
        return CKAAccumulator(self, self.path if path is None else _check_path(path))

    def score(self, candidate: Any, *, path: str | None = None) -> float:
        acc = self.accumulator(path)
        for batch in _batches(candidate, "candidate"):
            acc.add(batch)
        return acc.value()

    def gram_hat(self) -> Any:
        """The parent's centred Gram divided by its norm (built on first use: n² floats)."""
        if self._gram_hat is None:
            self._gram_hat = _project(self.backend.xp, self.y @ self.y.T, self.debiased) / self.norm
        return self._gram_hat

    def _self_norm(self) -> float:
        """‖P(L)‖ by the cheaper path; the Gram path also leaves the normalised Gram cached."""
        xp = self.backend.xp
        projected = None
        if choose_path(self.n, self.width, self.width) == "feature":
            y, b = self.y, self.y_sq_norms
            extras = (b.sum(), b @ b, y.T @ b) if self.debiased else None
            square = _feature_self_term(xp, y.T @ y, y.sum(axis=0), extras, self.n)
        else:
            projected = _project(xp, self.y @ self.y.T, self.debiased)
            square = xp.vdot(projected, projected)
        (square,) = self.backend.floats(square)
        if not math.isfinite(square):
            raise OnnxPruneError("parent features contain NaN or Inf")
        if square <= 0:
            raise OnnxPruneError("parent features have no variance across samples; CKA against them is undefined")
        norm = math.sqrt(square)
        if projected is not None and self.path != "feature":
            # Widths near the parent's take the Gram path too, so this is needed anyway.
            self._gram_hat = projected / norm
        return norm


class CKAAccumulator:
    """One candidate's CKA against a `CKAReference`, fed row batches in the parent's order."""

    def __init__(self, reference: CKAReference, path: str = "auto"):
        self.reference = reference
        self.requested_path = path
        self.rows = 0
        self._state: _FeatureState | _GramState | None = None

    @property
    def path(self) -> str | None:
        """'feature' or 'gram' once the first batch fixed the width; None before."""
        return None if self._state is None else self._state.path

    def add(self, batch: Any) -> None:
        ref = self.reference
        x = _as_rows(ref.backend, batch, "candidate")
        stop = self.rows + int(x.shape[0])
        if stop > ref.n:
            raise OnnxPruneError(f"candidate has more samples than the parent ({stop} > {ref.n}); rows must pair up")
        if self._state is None:
            self._state = self._start(int(x.shape[1]))
        elif x.shape[1] != self._state.width:
            raise OnnxPruneError(
                f"candidate batch has {x.shape[1]} features per sample, earlier batches had {self._state.width}"
            )
        self._state.add(x, slice(self.rows, stop))
        self.rows = stop

    def value(self) -> float:
        """CKA in [0, 1] (debiased: may be slightly negative); 0 for a constant candidate."""
        ref = self.reference
        if self._state is None or self.rows != ref.n:
            raise OnnxPruneError(f"candidate has {self.rows} samples but the parent has {ref.n}; rows must pair up")
        cross, square = ref.backend.floats(*self._state.terms())
        if not (math.isfinite(cross) and math.isfinite(square)):
            raise OnnxPruneError("candidate features contain NaN or Inf")
        if square <= 0:
            return 0.0  # no variance: nothing of the parent's representation survives
        # `cross` already carries 1/‖parent‖: norms divide one at a time, never under one sqrt.
        return cross / math.sqrt(square)

    def _start(self, width: int) -> "_FeatureState | _GramState":
        ref = self.reference
        path = self.requested_path
        if path == "auto":
            path = choose_path(ref.n, width, ref.width)
        return _FeatureState(ref, width) if path == "feature" else _GramState(ref, width)


class _FeatureState:
    """Sums over samples from which both estimators follow in closed form.

    Rows are shifted by the first batch's mean before any product, so a large activation
    offset never enters a product; the exact column mean is restored at the end (biased)
    or is irrelevant (the unbiased HSIC is translation invariant).
    """

    path = "feature"

    def __init__(self, ref: CKAReference, width: int):
        xp = ref.backend.xp
        self.ref, self.width = ref, width
        self.shift: Any = None
        self.xtx = xp.zeros((width, width))
        self.xty = xp.zeros((width, ref.width))
        self.col_sum = xp.zeros(width)
        if ref.debiased:
            # Σa, Σa², Σa·b, Xᵀa, Xᵀb with a, b the per-sample squared norms.
            self.sum_a, self.sum_a2, self.sum_ab = xp.zeros(()), xp.zeros(()), xp.zeros(())
            self.xta, self.xtb = xp.zeros(width), xp.zeros(width)

    def add(self, x: Any, rows: slice) -> None:
        if self.shift is None:
            self.shift = x.mean(axis=0)
        x = x - self.shift
        self.xtx += x.T @ x
        self.xty += x.T @ self.ref.y[rows]
        self.col_sum += x.sum(axis=0)
        if self.ref.debiased:
            a, b = (x * x).sum(axis=1), self.ref.y_sq_norms[rows]
            self.sum_a += a.sum()
            self.sum_a2 += a @ a
            self.sum_ab += a @ b
            self.xta += x.T @ a
            self.xtb += x.T @ b

    def terms(self) -> tuple[Any, Any]:
        """(cross term / parent norm, candidate's squared norm), both 0-d arrays."""
        ref, xp = self.ref, self.ref.backend.xp
        extras = (self.sum_a, self.sum_a2, self.xta) if ref.debiased else None
        square = _feature_self_term(xp, self.xtx, self.col_sum, extras, ref.n)
        # The parent's columns sum to zero, so the shift leaves XᵀY unchanged.
        cross = xp.vdot(self.xty, self.xty)
        if ref.debiased:
            sum_b = ref.y_sq_norms.sum()
            cross = _unbiased(
                ref.n,
                trace=cross - self.sum_ab,
                total_k=self.col_sum @ self.col_sum - self.sum_a,
                total_l=-sum_b,
                row_dot=self.sum_ab - self.col_sum @ self.xtb,
            )
        return cross / ref.norm, square


class _GramState:
    """Keeps the candidate's rows; centres them exactly once all have arrived."""

    path = "gram"

    def __init__(self, ref: CKAReference, width: int):
        self.ref, self.width = ref, width
        self.buffer = ref.backend.xp.empty((ref.n, width))

    def add(self, x: Any, rows: slice) -> None:
        self.buffer[rows] = x

    def terms(self) -> tuple[Any, Any]:
        xp = self.ref.backend.xp
        x = self.buffer - self.buffer.mean(axis=0)
        gram = x @ x.T
        projected = _project(xp, gram, self.ref.debiased)
        # ⟨K, P(L)⟩ = ⟨P(K), P(L)⟩ for the orthogonal projections P = H·H and U-centring.
        return xp.vdot(gram, self.ref.gram_hat()), xp.vdot(projected, projected)


def _feature_self_term(xp: Any, xtx: Any, col_sum: Any, extras: tuple[Any, Any, Any] | None, n: int) -> Any:
    """‖HKH‖² (biased) or n(n-3)·HSIC₁(K, K) (debiased) from feature sums, K = XXᵀ.

    `extras` (debiased only) are Σa, Σa² and Xᵀa, with a the per-sample squared norms.
    """
    if extras is None:
        centred = xtx - xp.outer(col_sum, col_sum) / n
        return xp.vdot(centred, centred)
    sum_a, sum_a2, xta = extras
    return _unbiased(
        n,
        trace=xp.vdot(xtx, xtx) - sum_a2,
        total_k=col_sum @ col_sum - sum_a,
        total_l=col_sum @ col_sum - sum_a,
        row_dot=col_sum @ xtx @ col_sum - 2 * (col_sum @ xta) + sum_a2,
    )


def _unbiased(n: int, *, trace: Any, total_k: Any, total_l: Any, row_dot: Any) -> Any:
    """n(n-3)·HSIC₁ (Song et al. 2012, eq. 5) from K̃, L̃ = K, L with zeroed diagonals:
    trace = tr(K̃L̃), total_k = 1ᵀK̃1, total_l = 1ᵀL̃1, row_dot = 1ᵀK̃L̃1."""
    return trace + total_k * total_l / ((n - 1) * (n - 2)) - 2.0 * row_dot / (n - 2)


def _project(xp: Any, gram: Any, debiased: bool) -> Any:
    """The centring each estimator uses: H·H (biased) or U-centring (debiased).

    Grams here come from centred features, so H·H would change nothing and is skipped.
    U-centring (Székely & Rizzo 2014) zeroes the diagonal and makes ⟨Ũ(K), Ũ(L)⟩ equal
    n(n-3)·HSIC₁(K, L).
    """
    if not debiased:
        return gram
    n = gram.shape[0]
    off = gram.copy()
    xp.fill_diagonal(off, 0.0)
    row = off.sum(axis=1)
    centred = off - row[:, None] / (n - 2) - row[None, :] / (n - 2) + row.sum() / ((n - 1) * (n - 2))
    xp.fill_diagonal(centred, 0.0)
    return centred


def _check_path(path: str) -> str:
    if path not in PATHS:
        raise OnnxPruneError(f"unknown CKA path {path!r}: use 'auto', 'feature' or 'gram'")
    return path


def _is_array(value: Any) -> bool:
    """Arrays (NumPy, CuPy, DLPack producers, OrtValues of any ORT version), not lists of them."""
    return (
        any(hasattr(value, name) for name in ("__dlpack__", "__array__", "__cuda_array_interface__"))
        or type(value).__module__.split(".")[0] == "onnxruntime"
    )


def _batches(value: Any, what: str) -> Iterable[Any]:
    """One array is one batch; a list, tuple or iterator yields batches of rows."""
    if _is_array(value):
        return (value,)
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        return value
    raise OnnxPruneError(
        f"{what} features must be an array [n, ...] or an iterable of them, got {type(value).__name__}"
    )


def _as_rows(backend: ArrayBackend, batch: Any, what: str) -> Any:
    """A batch as float64 [rows, features] on the backend (all axes after the first flattened)."""
    if not _is_array(batch):
        raise OnnxPruneError(f"each {what} batch must be an array [n, ...], got {type(batch).__name__}")
    array = backend.asarray(batch)
    if array.ndim == 0 or array.shape[0] == 0:
        raise OnnxPruneError(
            f"{what} batch needs a leading sample axis with at least one sample, got shape {tuple(array.shape)}"
        )
    if array.dtype.kind not in "fiub":
        raise OnnxPruneError(f"{what} features must be real numbers, got dtype {array.dtype}")
    rows = array.reshape(array.shape[0], -1)
    if rows.shape[1] == 0:
        raise OnnxPruneError(f"{what} batch has no features (shape {tuple(array.shape)})")
    return rows.astype(np.float64, copy=False)
