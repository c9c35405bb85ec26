"""Prune every model of the transformer zoo (models/transformers) under the issue's
settings and print a Markdown table: MACs and parameters before/after (measured on the
emitted model), whether the prediction was exact, and which interface values changed
(a KV cache shrinks with its heads).

    python benchmarks/transformers_prune.py
"""

from __future__ import annotations

import glob
import os
import time

from onnxprune.compiler.pipeline import prune

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = {
    "all 0.5": dict(ratio=0.5),
    "heads 0.5": dict(ratio=0.0, kind_ratios={"heads": 0.5}),
    "MLP 0.5": dict(ratio=0.0, kind_ratios={"channels": 0.5}),
    "hidden 0.25": dict(ratio=0.0, kind_ratios={"hidden": 0.25}),
}


def input_shapes(name: str, batch: int = 1, seq: int = 5, past: int = 3) -> dict:
    if name.startswith("vit"):
        return {"pixel_values": (batch, 3, 32, 32)}
    if name.startswith("bert"):
        return {"input_ids": (batch, seq), "attention_mask": (batch, seq)}
    kv = 4 if name.startswith("gpt2") else 2
    cache = {f"past_{t}_{i}": (batch, kv, past, 16) for t in ("key", "value") for i in (0, 1)}
    return {"input_ids": (batch, seq), **cache}


def main() -> None:
    paths = sorted(glob.glob(os.path.join(ROOT, "models", "transformers", "*.onnx")))
    print("| model | setting | groups (prunable) | MACs before | MACs after | MACs −% | params −% | exact prediction | interface changed | s |")
    print("|---|---|---|---:|---:|---:|---:|---|---|---:|")
    for path in paths:
        name = os.path.basename(path)
        for label, kwargs in SETTINGS.items():
            start = time.perf_counter()
            result = prune(path, input_shapes=input_shapes(name), **kwargs)
            took = time.perf_counter() - start
            r = result.report
            c, g = r["cost"], r["groups"]
            changed = sorted({ch["name"].rsplit("_", 1)[0] for ch in r["interface"]})
            print(
                f"| {name} | {label} | {g['total']} ({g['prunable']}) | {c['before']['macs'] / 1e6:.3f} M "
                f"| {c['after']['macs'] / 1e6:.3f} M | {100 * c['macs_reduction']:.1f} | {100 * c['params_reduction']:.1f} "
                f"| {'yes' if c['predicted'] == c['after'] else 'NO'} | {', '.join(changed) or '—'} | {took:.1f} |"
            )


if __name__ == "__main__":
    main()
