"""What evaluating one layer-pruning candidate costs, against one forward pass of the
calibration set through the probe, and against the naive way (rewrite the model and
build an ONNX Runtime session per candidate). All measured in this run, same machine.

    python benchmarks/probe_cost.py [--model PATH] [--samples 256] [--repeat 3]

Per candidate = (probe runs for all eligible candidates of one iteration + CKA of each
against the parent) / number of candidates; the parent's own pass is counted in.
Prefix-cached: each candidate runs from its block's gate on, from the parent's values
(runtime/prefix.py); its first call, which builds the suffix sessions, is shown apart.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import onnx_ir as ir

from onnxprune.compiler.layers import eligible
from onnxprune.model_io import load_model, resolve_input_shapes
from onnxprune.passes.blocks import find_blocks
from onnxprune.passes.remove_blocks import RemoveBlocksPass
from onnxprune.passes.shapes import static_shapes
from onnxprune.runtime.calibration import load_calibration
from onnxprune.runtime.cka import CKAReference
from onnxprune.runtime.probe import Candidate, ProbeModel
from onnxprune.runtime.session import ort_session, run_session

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "zoo", "resnet56.onnx"))
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0: ORT's default)")
    args = ap.parse_args()
    model = load_model(args.model)
    shapes = static_shapes(model, resolve_input_shapes(model, None))
    blocks = find_blocks(model, shapes)
    shape = (args.samples, *shapes[model.graph.inputs[0].name][1:])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    calib = load_calibration(x, model, batch_size=args.batch_size)
    probe = ProbeModel(model, blocks=blocks, threads=args.threads)
    choices = eligible(blocks, set(), 2)
    cands = [Candidate()] + [Candidate(blocks=frozenset([b])) for b in choices]

    forward = _best(lambda: probe.features(calib.batches(), [Candidate()]), args.repeat)

    def iteration(stack: int, base=None) -> None:
        feats = probe.features(calib.batches(), cands, stack=stack, base=base)
        ref = CKAReference(feats[0], backend="numpy")
        for f in feats[1:]:
            ref.score(f)

    start = time.perf_counter()
    iteration(8, cands[0])
    first = (time.perf_counter() - start) / len(choices)
    cached = _best(lambda: iteration(8, cands[0]), args.repeat) / len(choices)
    stacked = _best(lambda: iteration(8), args.repeat) / len(choices)
    single = _best(lambda: iteration(1), args.repeat) / len(choices)

    def naive() -> None:  # a rewritten model and a new session per candidate
        tap = probe.taps[0]
        parent = None
        for b in [None, *choices[:3]]:
            m = load_model(ir.serde.serialize_model(model))
            if b is not None:
                RemoveBlocksPass([b])(m)
            values = {v.name: v for n in m.graph for v in n.outputs if v is not None}
            m.graph.outputs.clear()
            m.graph.outputs.append(values[tap])
            session = ort_session(m, intra_op_num_threads=args.threads)
            f = np.concatenate([run_session(session, feeds)[tap] for feeds in calib.batches()])
            if parent is None:
                parent = CKAReference(f.reshape(len(f), -1), backend="numpy")
            else:
                parent.score(f.reshape(len(f), -1))

    naive_per = _best(naive, 1) / 3  # 3 candidates plus the parent, as above
    print(f"{os.path.basename(args.model)}: {len(choices)} eligible blocks, {args.samples} calibration samples, "
          f"batch {args.batch_size}\n")
    print("| measure | seconds | / one forward pass |")
    print("|---|---:|---:|")
    print(f"| one forward pass of the calibration set through the probe | {forward:.4f} | 1.00 |")
    print(f"| per candidate, stacked 8 per run (+ CKA, parent included) | {stacked:.4f} | {stacked / forward:.2f} |")
    print(f"| per candidate, one per run (+ CKA, parent included) | {single:.4f} | {single / forward:.2f} |")
    print(f"| per candidate, prefix-cached (+ CKA, parent included) | {cached:.4f} | {cached / forward:.2f} |")
    print(f"| per candidate, prefix-cached, first call (building the suffix sessions) | {first:.4f} | {first / forward:.2f} |")
    print(f"| per candidate, naive: rewrite + new session + run + CKA | {naive_per:.4f} | {naive_per / forward:.2f} |")
    print(f"\nprobe (stacked) vs naive: {naive_per / stacked:.1f}x faster per candidate; "
          f"target <= 1.2 forward passes per candidate: {'met' if stacked / forward <= 1.2 else 'NOT met'}; "
          f"prefix-cached <= 0.5: {'met' if cached / forward <= 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
