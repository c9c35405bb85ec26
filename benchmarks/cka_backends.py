"""Time per candidate of linear CKA (onnxprune.runtime.cka) on NumPy and CuPy, and the
measurement behind the default estimator (biased).

    python benchmarks/cka_backends.py            # n in 256, 512, 2048 x d in 64, 512, 4096
    python benchmarks/cka_backends.py --quick    # smoke run, a few seconds
    python benchmarks/cka_backends.py --threads 1   # pin BLAS threads: steadier on a shared machine

What it measures, all in one run:
- ms per candidate score: the parent's `CKAReference` is built once (its time is printed
  separately), then `score(candidate)` is timed with the candidate already resident on
  the backend (best of several calls). Parent and candidate have the same width d, as in
  layer pruning. Biased on the path `choose_path` picks and on the other path (so the
  rule can be checked), debiased on the picked path.
- On a CUDA machine with CuPy: the same on CuPy, the CuPy/NumPy speed-up, and the share
  of the GPU's GEMM peak the picked path reaches. The FP64 and FP32 (TF32 off) peaks are
  measured here with a large cupy matmul; CKA multiplies in float64. Without CuPy or a
  GPU those columns are left out with a note.
- The default: biased CKA of independent data against width, and rankings of candidates
  by both estimators (same width at the papers' setting; mixed widths).

Exit status 0 unless something fails to run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

from onnxprune.runtime.array_backend import cupy_available, disable_tf32, get_backend
from onnxprune.runtime.cka import CKAReference, choose_path, path_flops

FULL = {"sizes": (256, 512, 2048), "widths": (64, 512, 4096), "budget_s": 1.0, "peak_n": 8192}
QUICK = {"sizes": (256,), "widths": (64, 512), "budget_s": 0.05, "peak_n": 2048}


def best_seconds(call: Callable[[], object], sync: Callable[[], None], budget_s: float, max_calls: int = 15) -> float:
    """Fastest of repeated calls; repeats stop once `budget_s` is spent (at least 2 calls,
    so a first call's warm-up — thread pools, CUDA kernels — never is the answer)."""
    best, spent, calls = float("inf"), 0.0, 0
    while calls < 2 or (spent < budget_s and calls < max_calls):
        start = time.perf_counter()
        call()
        sync()
        elapsed = time.perf_counter() - start
        best, spent, calls = min(best, elapsed), spent + elapsed, calls + 1
    return best


def gemm_peak_tflops(n: int, dtype: type, budget_s: float) -> float:
    """Measured GEMM rate of this GPU (2n³ flops per n×n matmul)."""
    backend = get_backend("cupy")
    cupy = backend.xp
    a = cupy.random.standard_normal((n, n)).astype(dtype)
    b = cupy.random.standard_normal((n, n)).astype(dtype)
    return 2.0 * n**3 / best_seconds(lambda: a @ b, backend.synchronize, budget_s) / 1e12


def features(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A float32 parent and a related candidate (shared directions plus noise, offset 10)."""
    rng = np.random.default_rng(seed)
    parent = rng.standard_normal((n, d)).astype(np.float32) + 10
    candidate = parent + rng.standard_normal((n, d)).astype(np.float32)
    return parent, candidate


def time_backend(name: str, parent: np.ndarray, candidate: np.ndarray, budget_s: float) -> dict:
    backend = get_backend(name)
    n, d = parent.shape
    auto = choose_path(n, d, d)
    other = "gram" if auto == "feature" else "feature"
    on_device = backend.asarray(candidate)
    start = time.perf_counter()
    biased = CKAReference(parent, backend=backend)
    backend.synchronize()
    setup = time.perf_counter() - start
    debiased = CKAReference(parent, backend=backend, debiased=True)
    row = {"path": auto, "setup": setup}
    for key, ref, path in (("auto", biased, auto), ("other", biased, other), ("debiased", debiased, auto)):
        row[key] = best_seconds(lambda: ref.score(on_device, path=path), backend.synchronize, budget_s)
    row["value"] = biased.score(on_device)
    return row


def timing_table(config: dict, gpu: bool, peaks: dict[str, float], out: Callable[[str], None]) -> None:
    head = f"{'n':>6} {'d':>6} {'path':>8} {'setup ms':>9} {'ms/candidate':>13} {'other path':>11} {'debiased':>9}"
    if gpu:
        head += f" {'cupy ms':>9} {'cupy other':>11} {'cupy deb.':>10} {'speed-up':>9} {'%FP64':>6} {'%FP32':>6}"
    out(head)
    for n in config["sizes"]:
        for d in config["widths"]:
            parent, candidate = features(n, d, seed=n + d)
            cpu = time_backend("numpy", parent, candidate, config["budget_s"])
            line = (
                f"{n:>6} {d:>6} {cpu['path']:>8} {cpu['setup'] * 1e3:>9.2f} {cpu['auto'] * 1e3:>13.3f}"
                f" {cpu['other'] * 1e3:>11.3f} {cpu['debiased'] * 1e3:>9.3f}"
            )
            if gpu:
                dev = time_backend("cupy", parent, candidate, config["budget_s"])
                rate = path_flops(dev["path"], n, d, d) / dev["auto"] / 1e12
                line += (
                    f" {dev['auto'] * 1e3:>9.3f} {dev['other'] * 1e3:>11.3f} {dev['debiased'] * 1e3:>10.3f}"
                    f" {cpu['auto'] / dev['auto']:>8.1f}x"
                    f" {100 * rate / peaks['fp64']:>5.1f}% {100 * rate / peaks['fp32']:>5.1f}%"
                )
                assert abs(dev["value"] - cpu["value"]) < 1e-6, (dev["value"], cpu["value"])
            out(line)


def bias_measurement(quick: bool, out: Callable[[str], None]) -> None:
    """Why biased is the default, and when it is not the right choice."""
    n = 256
    widths = (64, 1024) if quick else (16, 64, 256, 1024, 4096)
    seeds = (0,) if quick else (0, 1, 2)
    out(f"\nbiased CKA of independent data (n={n}, parent and candidate width d, mean of {len(seeds)} seed(s)):")
    out(f"{'d':>6} {'biased':>9} {'debiased':>9}")
    for d in widths:
        values = {False: [], True: []}
        for seed in seeds:
            rng = np.random.default_rng(seed)
            x, y = rng.standard_normal((n, d)), rng.standard_normal((n, d))
            for debiased in values:
                values[debiased].append(CKAReference(y, debiased=debiased, backend="numpy").score(x))
        out(f"{d:>6} {np.mean(values[False]):>9.4f} {np.mean(values[True]):>9.4f}")

    rng = np.random.default_rng(7)
    n_same = 512 if quick else 2048
    parent = rng.standard_normal((n_same, 64))
    mix = np.linalg.qr(rng.standard_normal((64, 64)))[0]
    noisy = {s: parent @ mix + s * rng.standard_normal((n_same, 64)) for s in (0.5, 1.0, 2.0)}
    out(f"\nsame width (papers' setting: 64-d features, n={n_same}), candidates = rotated parent + noise sigma:")
    orders = []
    for debiased in (False, True):
        ref = CKAReference(parent, debiased=debiased, backend="numpy")
        scores = {s: ref.score(x) for s, x in noisy.items()}
        orders.append(sorted(scores, key=scores.get, reverse=True))
        listed = ", ".join(f"sigma {s}: {v:.4f}" for s, v in scores.items())
        out(f"  {'debiased' if debiased else 'biased':>8}: {listed}")
    out(f"  same ranking: {orders[0] == orders[1]}")

    parent = rng.standard_normal((n, 64))
    related = parent[:, :4] + rng.standard_normal((n, 4))
    unrelated = rng.standard_normal((n, 4096))
    out(f"\nmixed widths (n={n}, parent 64-d): a related 4-d candidate vs an independent 4096-d one:")
    for debiased in (False, True):
        ref = CKAReference(parent, debiased=debiased, backend="numpy")
        a, b = ref.score(related), ref.score(unrelated)
        verdict = "related wins" if a > b else "UNRELATED WINS"
        out(f"  {'debiased' if debiased else 'biased':>8}: related {a:.4f}, independent {b:.4f} -> {verdict}")


def environment(threads: int | None, out: Callable[[str], None]) -> None:
    pinned = ""
    try:
        import threadpoolctl

        if threads:
            threadpoolctl.threadpool_limits(threads)  # the returned limiter is only needed to undo it
        info = threadpoolctl.threadpool_info()
        pinned = ", ".join(f"{i['internal_api']} {i['num_threads']} thread(s)" for i in info)
    except ImportError:
        pinned = "threadpoolctl not installed (BLAS threads not pinned or reported)"
    machine = platform.processor() or platform.machine()
    out(f"{machine}, {os.cpu_count()} CPU(s), Python {platform.python_version()}, numpy {np.__version__}; {pinned}")
    out(f"load average before: {_load()}")
    np.ones((256, 256)) @ np.ones((256, 256))  # start BLAS's thread pool outside the timings


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one size, short timings (seconds)")
    parser.add_argument("--threads", type=int, default=None, help="pin BLAS threads (needs threadpoolctl)")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    environment(args.threads, out)

    gpu = cupy_available()
    peaks: dict[str, float] = {}
    if gpu:
        import cupy

        disable_tf32(cupy)  # the FP32 peak is true FP32, not TF32
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        for key, dtype in (("fp64", np.float64), ("fp32", np.float32)):
            peaks[key] = gemm_peak_tflops(config["peak_n"], dtype, config["budget_s"])
        out(
            f"GPU {props['name'].decode()}: measured GEMM peak at {config['peak_n']}^2: "
            f"FP64 {peaks['fp64']:.1f} TFLOP/s, FP32 (TF32 off) {peaks['fp32']:.1f} TFLOP/s"
        )
    else:
        out("CuPy columns left out: cupy is not installed or no CUDA device is visible")

    out("\nlinear CKA, time per candidate score (parent reference built once; float32 inputs, float64 arithmetic)")
    timing_table(config, gpu, peaks, out)
    out(f"load average after the timings: {_load()} (other processes on these cores inflate wall times)")
    bias_measurement(args.quick, out)
    return 0


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


if __name__ == "__main__":
    sys.exit(main())
