"""Peak memory of a whole prune against the size of the model's weights.

Builds two synthetic MLPs of Gemm layers (random weights; cached in --dir): one saved
as a single file (--single-gb, default 1.6 GB) and one with external data (--external-gb,
default 2.4 GB), then runs `onnxprune prune MODEL -o OUT --ratio 0.5` on each in a
fresh process and prints its peak resident memory (ru_maxrss) as a ratio of the weights,
next to the goal: peak <= 1.5 x weights + 1 GiB.

    python benchmarks/memory.py [--dir /tmp/onnxprune-memory] [--single-gb 1.6] [--external-gb 2.4]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

GIB = 2**30


def build(path: str, gigabytes: float, width: int, external: bool) -> int:
    """An MLP x -> (Gemm -> Relu) * n -> Gemm -> y of width `width` whose weights total
    about `gigabytes`; returns the weight bytes."""
    layer = width * width * 4
    n = max(2, round(gigabytes * 1e9 / layer))
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(n):
        w = (rng.standard_normal((width, width), dtype=np.float32) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        inits.append(numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}"))
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"h{i}"], name=f"gemm{i}", transB=1))
        if i < n - 1:
            nodes.append(helper.make_node("Relu", [f"h{i}"], [f"r{i}"], name=f"relu{i}"))
            prev = f"r{i}"
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info(f"h{n - 1}", TensorProto.FLOAT, [1, width])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if external:
        onnx.save(model, path, save_as_external_data=True, location=os.path.basename(path) + ".data",
                  size_threshold=1024)
    else:
        onnx.save(model, path)
    return sum(t.raw_data.__len__() for t in inits)


def peak_rss_of(argv: list[str]) -> tuple[int, float, int]:
    """(exit code, seconds, peak RSS bytes) of `argv`, run as the only child of a fresh
    process (ru_maxrss of children is a maximum over all of a process's children)."""
    probe = (
        "import resource, subprocess, sys, time; s = time.perf_counter(); "
        f"c = subprocess.run({argv!r}, capture_output=True).returncode; "
        "print(c, time.perf_counter() - s, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)"
    )
    code, took, peak = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                      check=True).stdout.split()
    return int(code), float(took), int(peak)


def measure(path: str, weights: int) -> None:
    out = path.replace(".onnx", ".pruned.onnx")
    code, took, peak = peak_rss_of([sys.executable, "-m", "onnxprune.cli", "prune", path, "-o", out, "--ratio", "0.5"])
    goal = 1.5 * weights + GIB
    print(f"| {os.path.basename(path)} | {weights / GIB:.2f} | {peak / GIB:.2f} | {peak / weights:.2f} | "
          f"{goal / GIB:.2f} | {'yes' if peak <= goal else 'NO'} | {took:.0f} | {code} |", flush=True)
    for leftover in (out, out + ".data"):
        if os.path.exists(leftover):
            os.remove(leftover)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/onnxprune-memory")
    ap.add_argument("--single-gb", type=float, default=1.6)
    ap.add_argument("--external-gb", type=float, default=2.4)
    ap.add_argument("--width", type=int, default=4096)
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    print("| model | weights GiB | peak RSS GiB | peak / weights | goal GiB (1.5 x + 1) | within goal | s | exit |")
    print("|---|---:|---:|---:|---:|---|---:|---:|", flush=True)
    for name, gigabytes, external in (("single.onnx", args.single_gb, False), ("external.onnx", args.external_gb, True)):
        path = os.path.join(args.dir, f"{gigabytes:g}gb_{name}")
        marker = path + ".bytes"
        if not os.path.exists(marker):
            weights = build(path, gigabytes, args.width, external)
            with open(marker, "w") as f:  # written last: a cache hit means the model is whole
                f.write(str(weights))
        with open(marker) as f:
            measure(path, int(f.read()))


if __name__ == "__main__":
    main()
