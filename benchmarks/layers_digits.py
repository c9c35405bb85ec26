"""Layer pruning on the digits ResNets: accuracy against MAC reduction when blocks are
dropped in CKA order (the `layers` strategy) and in random order (several seeds), no
fine-tuning. Accuracy is measured on the held-out test split through the probe model
(gate 0 = the block removed, exactly), CKA on the calibration split.

    python benchmarks/layers_digits.py [--model models/digits/digits_resnet56.onnx] [--seeds 5]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from onnxprune.compiler.layers import search_layers
from onnxprune.compiler.target import Target
from onnxprune.model_io import load_model, resolve_input_shapes
from onnxprune.passes.blocks import block_costs, find_blocks
from onnxprune.passes.shapes import static_shapes
from onnxprune.runtime.calibration import load_calibration
from onnxprune.runtime.probe import Candidate, ProbeModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(ROOT, "models", "digits")


def accuracies(probe: ProbeModel, order: list[int], x: np.ndarray, y: np.ndarray) -> list[float]:
    """Test accuracy after each prefix of `order` (index 0: nothing dropped)."""
    cands = [Candidate(blocks=frozenset(order[:k])) for k in range(len(order) + 1)]
    out = probe.run({probe.inputs[0]: x}, cands)
    return [float((r["logits"].argmax(1) == y).mean()) for r in out]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(DIGITS, "digits_resnet.onnx"))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--min-per-stage", type=int, default=2)
    args = ap.parse_args()
    model = load_model(args.model)
    shapes = static_shapes(model, resolve_input_shapes(model, None))
    blocks = find_blocks(model, shapes)
    costs = block_costs(model, blocks, shapes)
    calib = load_calibration(os.path.join(DIGITS, "digits_calib.npz"), model, batch_size=256)
    test = np.load(os.path.join(DIGITS, "digits_test.npz"))
    probe = ProbeModel(model, blocks=blocks, keep_outputs=True)
    target = Target(blocks=len(blocks))  # run until no block is eligible
    start = time.perf_counter()
    cka = search_layers(probe, blocks, calib, costs, target, min_per_stage=args.min_per_stage, progress=False)
    took = time.perf_counter() - start
    steps = [0.0] + [s["macs_reduction"] for s in cka.steps]
    acc_cka = accuracies(probe, cka.dropped, test["x"], test["y"])
    acc_random = []
    for seed in range(args.seeds):
        run = search_layers(probe, blocks, calib, costs, target, min_per_stage=args.min_per_stage,
                            order="random", seed=seed, progress=False)
        acc = accuracies(probe, run.dropped, test["x"], test["y"])
        acc_random.append(acc + [acc[-1]] * (len(acc_cka) - len(acc)))
    rand = np.array(acc_random)
    print(f"{os.path.basename(args.model)}: {len(blocks)} blocks, {len(cka.dropped)} dropped by CKA in {took:.1f} s "
          f"({len(calib.arrays['input'])} calibration samples); test accuracy, no fine-tuning\n")
    print("| blocks dropped | MACs −% | CKA order | random order: mean (min–max) over "
          f"{args.seeds} seeds | CKA above random mean |")
    print("|---:|---:|---:|---|---|")
    above = True
    for k, (red, a) in enumerate(zip(steps, acc_cka)):
        mean = rand[:, k].mean()
        ok = a >= mean if k else True
        above &= ok
        print(f"| {k} | {100 * red:.1f} | {100 * a:.2f} | {100 * mean:.2f} ({100 * rand[:, k].min():.2f}–"
              f"{100 * rand[:, k].max():.2f}) | {'yes' if ok else 'NO'} |")
    print(f"\nCKA order at or above the random mean at every step: {'yes' if above else 'NO'}")


if __name__ == "__main__":
    main()
