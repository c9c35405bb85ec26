"""How compile time grows with graph size: every stage of `onnxprune.compiler.pipeline.prune`
timed separately on synthetic deep residual CNNs (benchmarks/synthetic.py).

    python benchmarks/scaling.py                       # 1k, 10k, 50k nodes
    python benchmarks/scaling.py --sizes 1000 10000 --json out.json

The stages are the ones `prune` runs, called in the same order with the same arguments
(defaults: ratio 0.5, l1, per-group selection). The target is that "analysis + rewrite"
(channel analysis + scoring + selection + slice_channels) costs a flat time per node:
the largest µs/node divided by the smallest, measured in this run, must be ≤ 2. The
script prints everything and then exits 1 when it is not.

Each size is built once and saved to a temporary file; every repeat loads it afresh (the
rewrite mutates the model) and the best time of each stage over the repeats is kept.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import tempfile
import time

import onnx
from onnx_ir.passes.common import RemoveUnusedNodesPass

from onnxprune.compiler.importance import class_scores
from onnxprune.compiler.plan import PruningPlan
from onnxprune.compiler.report import group_rows
from onnxprune.compiler.selection import select_removed
from onnxprune.compiler.verify import verify_model
from onnxprune.model_io import load_model, resolve_input_shapes
from onnxprune.passes.channel_analysis import analyze_channels
from onnxprune.passes.cost import model_cost
from onnxprune.passes.fold_shapes import FoldShapeComputationsPass
from onnxprune.passes.predict import Predictor
from onnxprune.passes.shapes import InferValueShapesPass, static_shapes, symbolic_shapes
from onnxprune.passes.slice_channels import SliceChannelsPass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synthetic  # noqa: E402  (sibling module; benchmarks/ is not a package)

DEFAULT_SIZES = (1000, 10000, 50000)
TARGET_RATIO = 2.0
# Order of the table's columns; "analysis + rewrite" is the sum of AR_STAGES.
STAGES = (
    "load", "fold", "shapes", "analysis", "cost", "scoring", "selection",
    "predict", "plan", "rewrite", "cleanup", "verify", "cost_after",
)
AR_STAGES = ("analysis", "scoring", "selection", "rewrite")


class _Timer:
    """Wall time (perf_counter, what the table reports), process CPU time and time spent in
    Python's cyclic garbage collector, per stage. CPU time is kept because on a shared
    machine wall time also counts the time other processes held the cores; GC time
    because a full collection walks every live object, so it grows with the model held
    in memory rather than with the work a stage does."""

    def __init__(self):
        self.times: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.gc: dict[str, float] = {}
        self._gc_total = 0.0
        self._gc_start = 0.0

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self._gc_total += time.perf_counter() - self._gc_start

    def __enter__(self):
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc):
        gc.callbacks.remove(self._on_gc)

    def __call__(self, stage: str, fn, *args, **kwargs):
        start, cpu, in_gc = time.perf_counter(), time.process_time(), self._gc_total
        out = fn(*args, **kwargs)
        self.times[stage] = self.times.get(stage, 0.0) + time.perf_counter() - start
        self.cpu[stage] = self.cpu.get(stage, 0.0) + time.process_time() - cpu
        self.gc[stage] = self.gc.get(stage, 0.0) + self._gc_total - in_gc
        return out


def run_stages(path: str, *, ratio: float = 0.5, criterion: str = "l1", verify: bool = True) -> dict:
    """One pass of `prune`'s stages on the model at `path`: {stage: seconds} plus results."""
    with _Timer() as t:
        return _stages(t, path, ratio=ratio, criterion=criterion, verify=verify)


def _stages(t: _Timer, path: str, *, ratio: float, criterion: str, verify: bool) -> dict:

    def load_two():
        return load_model(path), load_model(path)

    original, model = t("load", load_two)
    t("fold", lambda: FoldShapeComputationsPass(symbolic_shapes(model))(model))

    def shapes_stage():
        shapes_in = resolve_input_shapes(model, None)
        return shapes_in, static_shapes(model, shapes_in)

    shapes_in, shapes = t("shapes", shapes_stage)
    an = t("analysis", analyze_channels, model, shapes, ())
    before = t("cost", model_cost, model, shapes)
    scores, used = t("scoring", class_scores, an, criterion)
    removed = t("selection", select_removed, an, scores, ratio)

    def predict_stage():
        p = Predictor(an, removed)
        return {"macs": p.total_macs(), "params": p.total_params()}

    predicted = t("predict", predict_stage)

    def plan_stage():
        plan = PruningPlan.from_removed(an, removed, ratio=ratio, criterion=criterion)
        rows = group_rows(an, removed, used)
        return plan, rows

    t("plan", plan_stage)
    t("rewrite", lambda: SliceChannelsPass(an, removed)(model))

    def cleanup_stage():
        RemoveUnusedNodesPass()(model)
        InferValueShapesPass()(model)

    t("cleanup", cleanup_stage)
    verified = None
    if verify:
        verified = t("verify", verify_model, original, model, shapes_in).ok
    after = t("cost_after", lambda: model_cost(model, static_shapes(model, shapes_in)))
    return {
        "times": t.times,
        "cpu": t.cpu,
        "gc": t.gc,
        "groups": len(an.groups),
        "channels_removed": len(removed),
        "macs_before": before.total_macs,
        "macs_predicted": predicted["macs"],
        "macs_after": after.total_macs,
        "params_predicted": predicted["params"],
        "params_after": after.total_params,
        "verified": verified,
    }


def measure(target_nodes: int, *, repeats: int | None = None, verify: bool = True, workdir: str | None = None) -> dict:
    """Build a synthetic model of about `target_nodes` nodes and time prune's stages on it."""
    start = time.perf_counter()
    proto = synthetic.residual_cnn(target_nodes)
    build_s = time.perf_counter() - start
    nodes = len(proto.graph.node)
    if repeats is None:
        repeats = 3 if nodes < 20000 else 1
    with tempfile.TemporaryDirectory(prefix="onnxprune-bench-", dir=workdir) as tmp:
        path = os.path.join(tmp, f"resnet_{nodes}.onnx")
        onnx.save(proto, path)
        size_mb = os.path.getsize(path) / 2**20
        del proto
        best: dict[str, float] = {}
        best_cpu: dict[str, float] = {}
        gc_at_best: dict[str, float] = {}
        result = None
        for _ in range(repeats):
            gc.collect()
            result = run_stages(path, verify=verify)
            in_gc = result.pop("gc")
            for stage, sec in result.pop("times").items():
                if sec < best.get(stage, float("inf")):
                    best[stage], gc_at_best[stage] = sec, in_gc[stage]
            for stage, sec in result.pop("cpu").items():
                best_cpu[stage] = min(best_cpu.get(stage, float("inf")), sec)
            gc.collect()
    ar = sum(best[s] for s in AR_STAGES)
    ar_cpu = sum(best_cpu[s] for s in AR_STAGES)
    ar_gc = sum(gc_at_best[s] for s in AR_STAGES)
    return {
        "target_nodes": target_nodes,
        "nodes": nodes,
        "file_mib": round(size_mb, 1),
        "repeats": repeats,
        "build_s": build_s,
        "stages_s": best,
        "stages_cpu_s": best_cpu,
        "stages_gc_s": gc_at_best,
        "total_s": sum(best.values()),
        "analysis_rewrite_s": ar,
        "analysis_rewrite_us_per_node": ar / nodes * 1e6,
        "analysis_rewrite_cpu_us_per_node": ar_cpu / nodes * 1e6,
        "analysis_rewrite_gc_us_per_node": ar_gc / nodes * 1e6,
        "loadavg_after": _loadavg(),
        **result,
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _table(rows: list[dict]) -> str:
    stages = [s for s in STAGES if any(s in r["stages_s"] for r in rows)]
    head = ["nodes", *stages, "total", "A+R s", "A+R us/node", "(cpu)"]
    lines = ["seconds per stage (best of `repeats`):", "  ".join(f"{h:>10}" for h in head)]
    for r in rows:
        cells = [f"{r['nodes']:>10}"]
        cells += [f"{r['stages_s'].get(s, float('nan')):>10.3f}" for s in stages]
        cells += [f"{r['total_s']:>10.2f}", f"{r['analysis_rewrite_s']:>10.3f}"]
        cells.append(f"{r['analysis_rewrite_us_per_node']:>10.1f}")
        cells.append(f"{r['analysis_rewrite_cpu_us_per_node']:>10.1f}")
        lines.append("  ".join(cells))
    lines += ["", "microseconds per node, per stage:", "  ".join(f"{h:>10}" for h in ["nodes", *stages])]
    for r in rows:
        cells = [f"{r['nodes']:>10}"]
        cells += [f"{r['stages_s'].get(s, float('nan')) / r['nodes'] * 1e6:>10.1f}" for s in stages]
        lines.append("  ".join(cells))
    lines += ["", "of which in Python's garbage collector, microseconds per node:"]
    lines.append("  ".join(f"{h:>10}" for h in ["nodes", *stages]))
    for r in rows:
        cells = [f"{r['nodes']:>10}"]
        cells += [f"{r['stages_gc_s'].get(s, float('nan')) / r['nodes'] * 1e6:>10.1f}" for s in stages]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def run(sizes=DEFAULT_SIZES, *, repeats: int | None = None, verify: bool = True, out=print) -> dict:
    """Measure every size, print the tables, and return the JSON-ready summary."""
    rows = []
    load_before = _loadavg()
    out(f"{len(sizes)} size(s) on {os.cpu_count()} CPU(s), load average {load_before}")
    for n in sizes:
        row = measure(n, repeats=repeats, verify=verify)
        rows.append(row)
        out(
            f"measured {row['nodes']} nodes ({row['file_mib']} MiB, {row['repeats']} repeat(s)): "
            f"A+R {row['analysis_rewrite_us_per_node']:.1f} us/node, total {row['total_s']:.2f} s, "
            f"{row['channels_removed']} channels removed, verified={row['verified']}, "
            f"predicted MACs == after: {row['macs_predicted'] == row['macs_after']}"
        )
    per_node = [r["analysis_rewrite_us_per_node"] for r in rows]
    ratio = max(per_node) / min(per_node)
    per_node_cpu = [r["analysis_rewrite_cpu_us_per_node"] for r in rows]
    ratio_cpu = max(per_node_cpu) / min(per_node_cpu)
    per_node_no_gc = [r["analysis_rewrite_us_per_node"] - r["analysis_rewrite_gc_us_per_node"] for r in rows]
    ratio_no_gc = max(per_node_no_gc) / min(per_node_no_gc)
    out("")
    out(_table(rows))
    out("")
    out(
        f"analysis + rewrite ({' + '.join(AR_STAGES)}): largest / smallest us/node = "
        f"{max(per_node):.1f} / {min(per_node):.1f} = {ratio:.2f} (target <= {TARGET_RATIO:g})"
    )
    out(
        f"  same by process CPU time (not gated, for judging noise): "
        f"{max(per_node_cpu):.1f} / {min(per_node_cpu):.1f} = {ratio_cpu:.2f}; load average now {_loadavg()}"
    )
    out(
        f"  same with garbage-collector time taken out (not gated): "
        f"{max(per_node_no_gc):.1f} / {min(per_node_no_gc):.1f} = {ratio_no_gc:.2f}"
    )
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "sizes": rows,
        "loadavg_before": load_before,
        "analysis_rewrite_ratio": ratio,
        "analysis_rewrite_cpu_ratio": ratio_cpu,
        "analysis_rewrite_no_gc_ratio": ratio_no_gc,
        "target_ratio": TARGET_RATIO,
        "ok": ratio <= TARGET_RATIO,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Time prune's stages against graph size.")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="target node counts")
    parser.add_argument(
        "--repeats", type=int, default=None, help="repeats per size (default 3 below 20k nodes, else 1)"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the checker + ONNX Runtime verification stage")
    parser.add_argument("--json", metavar="PATH", help="also write the measurements as JSON")
    args = parser.parse_args(argv)
    summary = run(args.sizes, repeats=args.repeats, verify=not args.no_verify)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    if not summary["ok"]:
        print(
            f"FAIL: analysis + rewrite time per node varies {summary['analysis_rewrite_ratio']:.2f}x "
            f"across sizes (target <= {TARGET_RATIO:g}x)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
