"""Array backends for CKA: one interface over NumPy (CPU) and CuPy (CUDA).

A backend is the array module (`xp`) plus the few things NumPy and CuPy do not share:
how a foreign array (NumPy, CuPy, an ONNX Runtime `OrtValue`, anything speaking DLPack)
becomes one of ours, how scalars come back to Python, and how to wait for the device.
The arithmetic itself is written once against `xp`, which both modules implement.

What it does: `get_backend("auto" | "numpy" | "cupy")`, `to_backend_array(value,
backend)`. An `OrtValue` on CUDA reaches CuPy through DLPack, sharing ORT's buffer (no
host round trip); a CPU `OrtValue` reaches NumPy the same way.

What it does not do: no dtype conversion, no reshaping, no device-to-device copies
between GPUs, and no import of CuPy or ONNX Runtime unless a caller asks for them. CuPy
stays optional: NumPy is the only hard dependency.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

from onnxprune.errors import OnnxPruneError

# DLPack device types (dlpack.h, DLDeviceType).
_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 13
_HOST_READABLE = (_DL_CPU, _DL_CUDA_HOST)


class ArrayBackend:
    """What CKA needs from an array library besides the arithmetic in `xp`."""

    name: str
    xp: ModuleType

    def asarray(self, value: Any) -> Any:
        raise NotImplementedError

    def floats(self, *scalars: Any) -> list[float]:
        """0-d arrays to Python floats in one transfer (one device sync on CuPy)."""
        return [float(v) for v in self.xp.stack([self.xp.asarray(s, dtype=np.float64) for s in scalars]).tolist()]

    def synchronize(self) -> None:
        """Wait for queued device work (for timing); a no-op on the CPU."""

    def __repr__(self) -> str:
        return f"<{self.name} backend>"


class NumpyBackend(ArrayBackend):
    name = "numpy"
    xp = np

    def asarray(self, value: Any) -> np.ndarray:
        if isinstance(value, np.ndarray):
            return value
        if _is_cupy_array(value):
            return value.get()  # a device-to-host copy cannot be avoided here
        if hasattr(value, "__dlpack__"):
            return _numpy_from_dlpack(value)
        return np.asarray(value)


class CupyBackend(ArrayBackend):
    name = "cupy"

    def __init__(self) -> None:
        import cupy

        self.xp = cupy

    def asarray(self, value: Any) -> Any:
        cupy = self.xp
        if isinstance(value, cupy.ndarray):
            return value
        if hasattr(value, "__dlpack__") and _dlpack_device(value) not in _HOST_READABLE:
            # Shares the producer's device buffer. ORT's Run returns after its stream is
            # done, so the data is ready; a producer refusing the DLPack 1.0 keyword
            # (max_version) gets a second try with a legacy capsule.
            try:
                return cupy.from_dlpack(value)
            except TypeError:
                return cupy.from_dlpack(value.__dlpack__())
        if _is_ort_value(value):
            return _cupy_from_legacy_ort(cupy, value)
        return cupy.asarray(NumpyBackend().asarray(value))  # host data: one upload

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, CUDARuntimeError, a broken driver: all mean "no"
        return False


_BACKENDS: dict[str, type[ArrayBackend]] = {"numpy": NumpyBackend, "cupy": CupyBackend}


def get_backend(backend: str | ArrayBackend = "auto") -> ArrayBackend:
    """A backend by name; "auto" is CuPy when it imports and a CUDA device is present."""
    if isinstance(backend, ArrayBackend):
        return backend
    if backend == "auto":
        backend = "cupy" if cupy_available() else "numpy"
    if backend not in _BACKENDS:
        raise OnnxPruneError(f"unknown array backend {backend!r}: use 'auto', 'numpy' or 'cupy'")
    if backend == "cupy" and not cupy_available():
        raise OnnxPruneError("backend 'cupy' needs the cupy package and a CUDA device; use 'numpy' or 'auto'")
    return _BACKENDS[backend]()


def to_backend_array(value: Any, backend: str | ArrayBackend = "numpy") -> Any:
    """`value` as an array of `backend`, without a copy wherever the data already lives there.

    NumPy arrays pass through; a CPU `OrtValue` or other host DLPack producer is wrapped
    with `numpy.from_dlpack`; a CUDA `OrtValue` or CuPy array goes to CuPy through DLPack
    (same device buffer). Crossing between host and device copies, as it must.
    """
    return get_backend(backend).asarray(value)


def _dlpack_device(value: Any) -> int:
    try:
        return int(value.__dlpack_device__()[0])
    except Exception:
        return _DL_CPU


def _is_cupy_array(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "cupy" and hasattr(value, "get")


def _is_ort_value(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "onnxruntime" and hasattr(value, "device_name")


def _numpy_from_dlpack(value: Any) -> np.ndarray:
    device = _dlpack_device(value)
    if device in _HOST_READABLE:
        try:
            return np.from_dlpack(value)
        except (TypeError, BufferError, RuntimeError):
            pass
    if device in (_DL_CUDA, _DL_CUDA_MANAGED) and cupy_available():
        import cupy

        return cupy.from_dlpack(value).get()
    if _is_ort_value(value):
        return value.numpy()
    raise OnnxPruneError(f"cannot read a {type(value).__name__} on DLPack device {device} into NumPy")


def _cupy_from_legacy_ort(cupy: ModuleType, value: Any) -> Any:
    """OrtValues from ONNX Runtime builds without `__dlpack__` still export a capsule."""
    if value.device_name().lower() == "cuda" and hasattr(getattr(value, "_ortvalue", None), "to_dlpack"):
        return cupy.from_dlpack(value._ortvalue.to_dlpack())
    return cupy.asarray(value.numpy())


def disable_tf32(cupy: ModuleType) -> None:
    """Make this process's CuPy float32 GEMMs true FP32 (TF32 keeps 10 mantissa bits).

    CKA never needs this — it multiplies in float64, which cuBLAS never runs as TF32 —
    so the backend leaves CuPy's process-wide setting alone; benchmarks that time float32
    GEMMs call it. CuPy picks the compute type per dtype on first use from CUPY_TF32;
    pinning float32 to the default compute type overrides that.
    """
    try:
        from cupy._core import _routines_linalg as linalg

        linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_DEFAULT)
    except (ImportError, AttributeError):
        if int(os.environ.get("CUPY_TF32", "0") or 0) > 0:
            raise OnnxPruneError("CUPY_TF32 is set and this CuPy cannot turn TF32 off; unset CUPY_TF32") from None
