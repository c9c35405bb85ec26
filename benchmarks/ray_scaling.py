"""Candidates scored on Ray workers against one worker, in one run (`pip install ray`):

    python benchmarks/ray_scaling.py [--workers 2] [--repeat 3]

One iteration of the layers search on the digits ResNet-56 (the parent with one block
dropped, and every other eligible block as a candidate; 256 calibration samples, prefix
caching on): the candidates' features, computed by one process with one ONNX Runtime
thread (one worker, without Ray's overhead) and by N Ray workers of one thread each on a
local Ray instance. Best of `--repeat` warm calls (the first call of each builds the
suffix sessions and, on Ray, sends the probe). The choice is made from the features
either way; the script checks they agree.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from onnxprune.compiler.workspace import Workspace
from onnxprune.model_io import load_model
from onnxprune.runtime.calibration import load_calibration
from onnxprune.runtime.probe import Candidate, ProbeModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(ROOT, "models", "digits")


def best(fn, repeat: int) -> tuple[float, list]:
    fn()  # warm
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from onnxprune.runtime.distributed import WorkerPool

    path = os.path.join(DIGITS, "digits_resnet56.onnx")
    ws = Workspace(path)
    calib = load_calibration(os.path.join(DIGITS, "digits_calib.npz"), load_model(path), batch_size=64)
    probe = ProbeModel(ws.model, blocks=ws.blocks, threads=1)
    ids = sorted(probe.blocks)
    base = Candidate(blocks=frozenset({ids[len(ids) // 2]}))
    candidates = [base] + [Candidate(blocks=base.blocks | {b}) for b in ids if b not in base.blocks]
    one, here = best(lambda: probe.features(calib.batches(), candidates, base=base), args.repeat)
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    pool = WorkerPool(args.workers)
    remote = pool.probe(probe)
    many, there = best(lambda: remote.features(calib.batches(), candidates, base=base), args.repeat)
    pool.close()
    ray.shutdown()
    same = all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(here, there))
    print(f"digits ResNet-56, {len(candidates)} candidates (one layers-search iteration), 256 samples, "
          f"{os.cpu_count()} CPUs\n")
    print("| run | seconds | speed-up |")
    print("|---|---:|---:|")
    print(f"| one worker (this process, 1 ONNX Runtime thread) | {one:.3f} | 1.00 |")
    print(f"| {args.workers} Ray workers (1 thread each) | {many:.3f} | {one / many:.2f} |")
    print(f"\nsame features: {'yes' if same else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
