"""`onnxprune sweep`: several models × methods × targets, each one `onnxprune prune` run
with its own model and JSON report, and one summary (`summary.json` and a printed table).

    onnxprune sweep a.onnx b.onnx -o runs/ --calib data.npz --method layers everything \
        --target-flops 0.2 0.4 [--workers 4 | --ray ADDRESS] [--eval test.npz]

Each run is `onnxprune prune MODEL -o DIR/<stem>.<method>.<target>.onnx --report
DIR/<stem>.<method>.<target>.json --method M --calib DATA --target-flops T ...` (with
`--html`, also `--html DIR/<stem>.<method>.<target>.html`), in this
process one after the other, or with `--workers N` / `--ray ADDRESS` as Ray tasks (one
CPU each; the runs are independent, so results are those of the runs made one by one).
Exit status: 0 when every run exited 0 or 3 (a target missed is a result, and the
summary says so), 1 when any run failed (its one-line error is in the summary).

What this does not do: share work between runs (each analyses its model), or run a
search's candidates on several workers (that is `prune --workers`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time


def runs(args) -> list[dict]:
    """One dict per run: its name, the prune arguments and where its report goes."""
    out = []
    for model in args.models:
        stem = os.path.splitext(os.path.basename(model))[0]
        for method in args.method:
            for target in args.target_flops:
                name = f"{stem}.{method}.{target:g}"
                prune = ["prune", model, "-o", os.path.join(args.output, f"{name}.onnx"), "--method", method,
                         "--calib", args.calib, "--target-flops", str(target),
                         "--report", os.path.join(args.output, f"{name}.json"), "--recover", args.recover]
                if args.eval:
                    prune += ["--eval", args.eval]
                if args.samples:
                    prune += ["--samples", str(args.samples)]
                if args.html:  # one page per run, next to its model and report
                    prune += ["--html", os.path.join(args.output, f"{name}.html")]
                out.append({"name": name, "model": model, "method": method, "target_flops": target, "args": prune})
    return out


def run_one(main, prune_args: list[str]) -> dict:
    """One prune run of the CLI's `main` (passed in: this module sits below the CLI) in
    this process: exit code, seconds, its last stderr line."""
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(prune_args)
    lines = err.getvalue().strip().splitlines()
    return {"exit": code, "seconds": round(time.perf_counter() - start, 2), "stderr": lines[-1] if lines else ""}


def sweep(args, main) -> tuple[list[dict], int]:
    """Run every combination with the CLI's `main`; the summary rows and the exit status."""
    os.makedirs(args.output, exist_ok=True)
    todo = runs(args)
    if args.workers > 1 or args.ray:
        results = _on_ray(main, todo, args.workers, args.ray)
    else:
        results = [run_one(main, r["args"]) for r in todo]
    rows = []
    for r, got in zip(todo, results):
        row = {k: r[k] for k in ("name", "model", "method", "target_flops")} | got
        report_path = r["args"][r["args"].index("--report") + 1]
        if got["exit"] in (0, 3) and os.path.exists(report_path):
            with open(report_path) as f:
                rep = json.load(f)
            row |= {"report": report_path, "macs_reduction": rep["cost"]["macs_reduction"],
                    "params_reduction": rep["cost"]["params_reduction"], "target_reached": rep.get("target_reached"),
                    "verified": (rep.get("verification") or {}).get("ok"),
                    "accuracy": rep.get("accuracy")}
        rows.append(row)
    _write_summary(os.path.join(args.output, "summary.json"), rows)
    return rows, 0 if all(r["exit"] in (0, 3) for r in rows) else 1


def _on_ray(main, todo: list[dict], workers: int, address: str | None) -> list[dict]:
    from onnxprune.runtime.distributed import start_ray

    ray = start_ray(workers, address)
    task = ray.remote(num_cpus=1)(run_one)
    return ray.get([task.remote(main, r["args"]) for r in todo])


def _write_summary(path: str, rows: list[dict]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"runs": rows}, f, indent=1)
    os.replace(tmp, path)


def table(rows: list[dict]) -> str:
    lines = ["| run | exit | MACs −% | params −% | target reached | verified | accuracy before → after | s |",
             "|---|---:|---:|---:|---|---|---|---:|"]
    for r in rows:
        if "macs_reduction" not in r:
            lines.append(f"| {r['name']} | {r['exit']} | — | — | — | — | {r['stderr']} | {r['seconds']} |")
            continue
        acc = r.get("accuracy")
        acc_text = f"{100 * acc['before']:.2f} → {100 * acc['after']:.2f} %" if acc else "—"
        lines.append(f"| {r['name']} | {r['exit']} | {100 * r['macs_reduction']:.1f} | {100 * r['params_reduction']:.1f} | "
                     f"{r['target_reached']} | {r['verified']} | {acc_text} | {r['seconds']} |")
    return "\n".join(lines)
