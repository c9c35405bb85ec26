"""ONNX Runtime sessions: one way to build a session for any model (bytes under 2 GB, a
temporary file above), to run it on NumPy feeds (bfloat16 included), and to time it.

What this does not do: cache sessions, or choose providers for the caller (CPU unless
told; the probe asks for CUDA first through `default_providers`).
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import (
    first_line,
    prefers_file,
    release_mapped,
    save_model,
    to_proto,
)


def _onnxruntime():
    """onnxruntime, with its process-wide logger kept quiet (errors reach the user as
    onnxprune's one line) and its telemetry off."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise OnnxPruneError(
            "onnxruntime is not installed: pip install onnxprune[cpu] (or onnxprune[gpu] for CUDA)"
        ) from err
    ort.set_default_logger_severity(4)
    if hasattr(ort, "disable_telemetry_events"):
        ort.disable_telemetry_events()
    return ort


def ort_session(
    model: ir.Model | onnx.ModelProto | str | os.PathLike,
    *,
    providers: list | None = None,
    intra_op_num_threads: int = 1,
    optimize: str = "basic",
):
    """An onnxruntime.InferenceSession for `model` (CPU, basic graph optimisations, or
    with `optimize="all"` every one ONNX Runtime has, layout changes included: on the
    digits ResNet-56 a probe runs 3.7× faster so — for sessions whose numbers feed a
    comparison, not a check of the emitted model).

    One intra-op thread by default, for bit-for-bit repeatable results. An ir.Model is
    passed as bytes when under 2 GB, else saved to a temporary directory that lives as
    long as the session. Does not cache sessions.
    """
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize == "all" else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    )
    options.intra_op_num_threads = intra_op_num_threads
    options.inter_op_num_threads = 1
    # onnxprune reports ONNX Runtime's failures in its own one line; ORT's logger would
    # print them (and warnings, ANSI-coloured) to stderr as well.
    options.log_severity_level = 4
    providers = providers or ["CPUExecutionProvider"]
    keep_alive = None
    if isinstance(model, ir.Model):
        if prefers_file(model):
            keep_alive = tempfile.TemporaryDirectory(prefix="onnxprune-")
            source = os.path.join(keep_alive.name, "model.onnx")
            save_model(model, source, external_data=True)
            release_mapped(model)  # the pages the save read need not stay in this process
        else:
            source = to_proto(model).SerializeToString()
    elif isinstance(model, onnx.ModelProto):
        source = model.SerializeToString()
    else:
        source = os.fspath(model)
    try:
        session = ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as err:
        raise OnnxPruneError(f"ONNX Runtime could not load the model: {first_line(err)}") from err
    if keep_alive is not None:
        session._onnxprune_tmpdir = keep_alive  # deleted with the session
    return session


def tapped_session(model: ir.Model, names: list[str], *, providers: list | None = None, threads: int = 1):
    """A session of a copy of `model` whose outputs are the values `names`, in order
    (graph inputs or node outputs); external data stays where the model was loaded from.
    Every optimisation on: its values feed statistics, not a check of the model."""
    tapped = model.clone()
    values = {v.name: v for n in tapped.graph for v in n.outputs if v is not None}
    values.update({v.name: v for v in tapped.graph.inputs})
    tapped.graph.outputs.clear()
    tapped.graph.outputs.extend(values[n] for n in names)
    return ort_session(tapped, providers=providers, intra_op_num_threads=threads, optimize="all")


def tapped_features(model: ir.Model, taps: list[str], batches) -> np.ndarray:
    """The values `taps` of `model` over `batches`, flattened per sample and side by side
    ([samples, features]: what the probe's `features` gives for an unpruned candidate)."""
    session = tapped_session(model, taps)
    rows = []
    for feeds in batches:
        arrays = run_tapped(session, feeds)
        rows.append(np.concatenate([a.reshape(len(a), -1) for a in arrays], axis=1))
    return np.concatenate(rows, axis=0)


def run_tapped(session, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run a `tapped_session` on the feeds it takes (the copy may read fewer inputs)."""
    return list(run_session(session, {i.name: feeds[i.name] for i in session.get_inputs()}).values())


def run_session(session, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run `session` on numpy feeds; return every output by name as a numpy array.

    ONNX Runtime's Python API has no numpy type for bfloat16, so when an input or output
    is bfloat16 the feeds go in as OrtValues and outputs are copied out of their CPU
    buffers as ml_dtypes.bfloat16. Runtime failures become OnnxPruneError.
    """
    import onnxruntime as ort

    names = [o.name for o in session.get_outputs()]
    bf16 = ir.DataType.BFLOAT16.numpy()
    try:
        uses_bf16 = any(a.dtype == bf16 for a in feeds.values()) or any(
            o.type == "tensor(bfloat16)" for o in session.get_outputs()
        )
        if not uses_bf16:
            return dict(zip(names, session.run(None, dict(feeds))))
        values = {
            name: ort.OrtValue.ortvalue_from_numpy_with_onnx_type(a.view(np.uint16), onnx.TensorProto.BFLOAT16)
            if a.dtype == bf16
            else ort.OrtValue.ortvalue_from_numpy(a)
            for name, a in feeds.items()
        }
        return {name: _ortvalue_to_numpy(v) for name, v in zip(names, session.run_with_ort_values(None, values))}
    except Exception as err:
        raise OnnxPruneError(f"ONNX Runtime failed running the model: {first_line(err)}") from err


def _ortvalue_to_numpy(value) -> np.ndarray:
    if value.data_type() != "tensor(bfloat16)":
        return value.numpy()
    import ctypes

    nbytes = value.tensor_size_in_bytes()
    raw = (ctypes.c_uint8 * nbytes).from_address(value.data_ptr()) if nbytes else b""
    return np.frombuffer(bytes(raw), dtype=np.uint16).view(ir.DataType.BFLOAT16.numpy()).reshape(value.shape())


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime build has it (onnxruntime-gpu), else CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def measure_latency(model: ir.Model, feeds: Mapping[str, np.ndarray], runs: int = 30) -> float:
    """Median wall time (s) of one ONNX Runtime run on `feeds` (1 thread, after warm-up)."""
    session = ort_session(model)
    names = [i.name for i in session.get_inputs()]
    data = {n: feeds[n] for n in names}
    for _ in range(3):
        session.run(None, data)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, data)
        times.append(time.perf_counter() - start)
    return float(np.median(times))
