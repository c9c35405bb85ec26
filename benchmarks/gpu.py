"""The GPU run in one script: what onnxprune's GPU claims need measured on a lent CUDA
machine (an H100/H200 with onnxruntime-gpu and cupy-cuda13x from the `gpu` extra, no
network, probably no torch), and the same code on the CPU, smaller, so that it is
exercised before a GPU is ever lent.

    python benchmarks/gpu.py                      # on the GPU machine: ~8 min on an H200 + 16 cores
    python benchmarks/gpu.py --quick --cpu        # here: small sizes, GPU hidden (~2 min on 2 cores)
    python benchmarks/gpu.py --skip decoder --out /tmp/gpu.json --workdir /tmp/gpu

Sections (each prints a markdown table as it finishes, and the JSON, `--out`, default
benchmarks/results/gpu.json, is rewritten atomically after each one, so a run cut short
still leaves what it measured):

- `environment`: Python, onnx, onnxruntime version and providers, whether a probe
  session (`runtime/probe.py`, providers from `session.default_providers`: CUDA first when
  the build has it) really runs on CUDAExecutionProvider (ONNX Runtime falls back to the
  CPU silently when CUDA cannot load: `get_providers()` says what it took), and the time
  of one probe pass over the digits calibration set; CuPy's version and device;
  nvidia-smi's GPU name, driver and memory.
- `cka`: linear CKA per candidate score (benchmarks/cka_backends.py's timings, imported)
  on NumPy and, with a GPU, CuPy; the rate the picked path reaches as a share of the
  GEMM peak measured in the same run (FP64 and FP32 with TF32 off, on the GPU; FP64
  NumPy on the CPU, so the CPU run has a number too).
- `digits`: `onnxprune prune --method everything` on the digits ResNet-56 to −80 % MACs
  with 512 calibration samples (`--quick`: −40 %, 128), through the CLI in a fresh
  process: seconds (the issue's goal on the GPU: under 10 s), exit code (3 = target not
  reached: a result, not a crash), MACs reduction, test accuracy before and after, peak
  RSS. The committed calibration split has 256 samples; above that the rest are the
  same images shifted one pixel right (written to --workdir).
- `vit`, `decoder`: a ViT-B/16 (86 M parameters) and a Llama-like decoder (~1.04 B
  parameters, 4.2 GB of external data), random weights, built by
  benchmarks/transformer_graphs.py, then pruned by the CLI with `--ratio 0 --heads 0.25
  --channels 0.25 --hidden 0` (the residual width — and so the graph output — stays
  fixed), `--recover none` by default (recovery gathers its statistics in ONNX Runtime on
  the CPU; --transformer-recover changes it): build seconds, prune seconds, peak RSS of
  the prune process, GPU memory (nvidia-smi memory.used sampled every 0.2 s, "n/a"
  without it), MACs and parameters before/after, head and MLP groups found and units
  removed, verification. `--quick`: ViT with 2 layers, decoder of width 512, 8 heads,
  MLP 1376, 2 layers.

`--cpu` hides the GPU (CUDA_VISIBLE_DEVICES="" for this process and its children); it
is also the mode when no GPU is found. Exit status 0 when every section ran (a prune
that exits 3 counts as having run), 1 otherwise.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)  # the sibling benchmark modules, as the other scripts here do
DIGITS = os.path.join(ROOT, "models", "digits")
SECTIONS = ("environment", "cka", "digits", "vit", "decoder")
GIB = 2**30

QUICK_VIT = {"layers": 2}
QUICK_DECODER = {"width": 512, "heads": 8, "mlp": 1376, "layers": 2}


def say(line: str = "") -> None:
    print(line, flush=True)  # flushed: a run killed at its time limit still shows what it measured


def table(headers: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str, data: dict) -> None:
    """Atomically: a temporary file in the same directory, then rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".gpu-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- measuring a child process


def nvidia_smi(query: str) -> list[str] | None:
    """One nvidia-smi --query-gpu line per GPU, or None without nvidia-smi (or with the
    GPU hidden: then the numbers would be some other process's)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "" or shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                             check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines() if out.returncode == 0 else None


class GpuMemorySampler:
    """Peak of nvidia-smi's memory.used (MiB, first GPU) while a child runs. Whole-GPU
    numbers: the baseline before the child starts is recorded so the child's share can be
    told apart from other processes'."""

    def __init__(self, period_s: float = 0.2):
        self.period_s, self.samples = period_s, []
        self.baseline = self._read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _read() -> float | None:
        lines = nvidia_smi("memory.used")
        try:
            return float(lines[0]) if lines else None
        except ValueError:
            return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            value = self._read()
            if value is not None:
                self.samples.append(value)
            self._stop.wait(self.period_s)

    def __enter__(self):
        if self.baseline is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def result(self) -> dict:
        if self.baseline is None:
            return {"gpu_mem_peak_mib": None, "gpu_mem_baseline_mib": None}
        return {"gpu_mem_peak_mib": max(self.samples, default=self.baseline), "gpu_mem_baseline_mib": self.baseline}


def _libc_prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux


# Looked up here, in the parent: between fork and exec the child then only makes the call
# (no dlopen/dlsym, whose locks another thread may have held at the fork).
_PRCTL = _libc_prctl()


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it when this script dies, so a run stopped at its
    time limit leaves no prune holding the machine's memory (PR_SET_PDEATHSIG = 1)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)


def run_measured(argv: list[str], log_path: str, timeout_s: float) -> dict:
    """Run `argv`; its exit code, wall seconds, peak resident memory and GPU memory.

    Peak RSS comes from wait4 on this very child (ru_maxrss, KiB on Linux), so earlier
    children of this script do not count, unlike RUSAGE_CHILDREN's maximum over all of
    them. Output goes to `log_path`; its last lines come back."""
    with open(log_path, "wb") as log, GpuMemorySampler() as gpu:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                preexec_fn=_die_with_parent)  # noqa: PLW1509 - it only calls prctl (above)
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: Popen must not wait again
    with open(log_path, errors="replace") as f:
        tail = f.read().strip().splitlines()[-6:]
    return {
        "argv": [os.path.relpath(a, ROOT) if os.path.isabs(a) and a.startswith(ROOT) else a for a in argv],
        "exit_code": proc.returncode, "timed_out": proc.returncode == -9 and seconds >= timeout_s,
        "seconds": round(seconds, 3), "peak_rss_gib": round(usage.ru_maxrss * 1024 / GIB, 3),
        **gpu.result(), "output_tail": tail,
    }


def report_summary(path: str) -> dict:
    """What a prune report says about cost, groups, verification (None without one)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        report = json.load(f)
    cost = report.get("cost", {})
    kinds: dict[str, dict] = {}
    for group in report.get("groups", {}).get("detail", []):
        k = kinds.setdefault(group["kind"], {"groups": 0, "prunable_groups": 0, "prunable_units": 0, "removed": 0})
        k["groups"] += 1
        k["prunable_groups"] += bool(group["prunable"])
        k["prunable_units"] += group["prunable"]  # frozen groups (a classifier's outputs) left out
        k["removed"] += group["removed"]
    out = {
        "macs_before": cost.get("before", {}).get("macs"), "macs_after": cost.get("after", {}).get("macs"),
        "params_before": cost.get("before", {}).get("params"), "params_after": cost.get("after", {}).get("params"),
        "macs_reduction": cost.get("macs_reduction"), "params_reduction": cost.get("params_reduction"),
        "groups": kinds, "blocks_dropped": report.get("blocks", {}).get("dropped"),
        "verified": report.get("verification", {}).get("ok"),
        "verification": report.get("verification", {}).get("message"),
        "interface_changes": report.get("interface"),
        "target_reached": report.get("target_reached"), "stopped_because": report.get("stopped_because"),
    }
    if report.get("accuracy"):
        out["accuracy_before"] = report["accuracy"].get("before")
        out["accuracy_after"] = report["accuracy"].get("after")
    if report.get("iterations"):
        out["iterations"] = len(report["iterations"])
        out["chosen"] = report.get("chosen")
    return out


# --------------------------------------------------------------------------- sections


def section_environment(mode: str, gpu: bool) -> dict:
    import numpy as np
    import onnx
    import onnxruntime as ort

    from onnxprune.model_io import load_model
    from onnxprune.runtime.array_backend import cupy_available
    from onnxprune.runtime.calibration import load_calibration
    from onnxprune.runtime.probe import Candidate, ProbeModel
    from onnxprune.runtime.session import default_providers

    env = {
        "mode": mode, "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "numpy": np.__version__, "onnx": onnx.__version__,
        "onnxruntime": ort.__version__, "onnxruntime_device": ort.get_device(),
        "available_providers": ort.get_available_providers(), "requested_by_probe": default_providers(),
    }
    # A probe of the digits ResNet-56 (taps only: `prune --method everything` adds gates
    # and masks, its session comes from the same code): the execution providers the
    # session took (not where each node went) and one pass over the 256 calibration samples.
    path = os.path.join(DIGITS, "digits_resnet56.onnx")
    model = load_model(path)
    probe = ProbeModel(model)
    env["probe_providers"] = probe.session.get_providers()
    env["probe_uses_cuda"] = env["probe_providers"][0] == "CUDAExecutionProvider"
    calib = load_calibration(os.path.join(DIGITS, "digits_calib.npz"), model, batch_size=64)
    probe.features(calib.batches(), [Candidate()])  # warm-up: CUDA kernels, thread pools
    start = time.perf_counter()
    probe.features(calib.batches(), [Candidate()])
    env["probe_pass_s"] = round(time.perf_counter() - start, 4)

    env["cupy"] = env["cupy_device"] = env["cuda_runtime"] = None
    env["cupy_sees_gpu"] = cupy_available()
    try:
        import cupy

        env["cupy"] = cupy.__version__
        if gpu and env["cupy_sees_gpu"]:
            props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
            env["cupy_device"] = props["name"].decode()
            env["cupy_device_memory_gib"] = round(props["totalGlobalMem"] / GIB, 1)
            env["compute_capability"] = f"{props['major']}.{props['minor']}"
            env["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    except ImportError:
        pass
    smi = nvidia_smi("name,driver_version,memory.total")
    env["nvidia_smi"] = smi
    say(table(["key", "value"], [[k, v] for k, v in env.items()]))
    return env


def section_cka(quick: bool, gpu: bool) -> dict:
    import cka_backends as cka
    import numpy as np

    from onnxprune.runtime.array_backend import cupy_available
    from onnxprune.runtime.cka import path_flops

    note = None
    if gpu and not cupy_available():  # nvidia-smi sees a GPU, CuPy does not (not installed, or no driver match)
        gpu, note = False, "a GPU is present but CuPy cannot use it: CuPy columns not measured"
    config = dict(cka.QUICK if quick else cka.FULL)
    config["budget_s"] = min(config["budget_s"], 0.5)  # the whole run has ~8 minutes
    result: dict = {"sizes": list(config["sizes"]), "widths": list(config["widths"]), "rows": []}
    if gpu:
        import cupy

        from onnxprune.runtime.array_backend import disable_tf32

        disable_tf32(cupy)  # the FP32 peak is true FP32, not TF32 (CKA multiplies in FP64)
        peaks = {key: cka.gemm_peak_tflops(config["peak_n"], dtype, config["budget_s"])
                 for key, dtype in (("fp64", np.float64), ("fp32", np.float32))}
        result["gpu_peak_tflops"] = {k: round(v, 2) for k, v in peaks.items()}
        say(f"GPU GEMM peak at {config['peak_n']}²: FP64 {peaks['fp64']:.1f}, FP32 (TF32 off) "
            f"{peaks['fp32']:.1f} TFLOP/s")
    else:
        result["gpu_peak_tflops"] = None
    # The CPU's own FP64 GEMM rate, so that NumPy's CKA has a share of a peak too.
    n = config["peak_n"]
    a, b = np.random.default_rng(0).standard_normal((2, n, n))
    cpu_peak = 2.0 * n**3 / cka.best_seconds(lambda: a @ b, lambda: None, config["budget_s"]) / 1e12
    result["cpu_peak_fp64_tflops"] = round(cpu_peak, 4)
    say(f"CPU (NumPy) FP64 GEMM peak at {n}²: {cpu_peak * 1e3:.1f} GFLOP/s")

    rows = []
    for n in config["sizes"]:
        for d in config["widths"]:
            parent, candidate = cka.features(n, d, seed=n + d)
            cpu = cka.time_backend("numpy", parent, candidate, config["budget_s"])
            cpu_rate = path_flops(cpu["path"], n, d, d) / cpu["auto"] / 1e12
            row = {"n": n, "d": d, "path": cpu["path"], "numpy_ms": cpu["auto"] * 1e3,
                   "numpy_other_path_ms": cpu["other"] * 1e3, "numpy_debiased_ms": cpu["debiased"] * 1e3,
                   "numpy_share_of_cpu_peak": cpu_rate / cpu_peak}
            if gpu:
                dev = cka.time_backend("cupy", parent, candidate, config["budget_s"])
                rate = path_flops(dev["path"], n, d, d) / dev["auto"] / 1e12
                row.update({"cupy_ms": dev["auto"] * 1e3, "cupy_other_path_ms": dev["other"] * 1e3,
                            "cupy_debiased_ms": dev["debiased"] * 1e3, "speedup": cpu["auto"] / dev["auto"],
                            "cupy_tflops": rate, "share_of_fp64_peak": rate / peaks["fp64"],
                            "share_of_fp32_peak": rate / peaks["fp32"],
                            "cupy_numpy_difference": abs(dev["value"] - cpu["value"])})
            rows.append({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()})
    result["rows"] = rows
    headers = ["n", "d", "path", "numpy ms", "% CPU FP64 peak"]
    cells = [[r["n"], r["d"], r["path"], r["numpy_ms"], 100 * r["numpy_share_of_cpu_peak"]] for r in rows]
    if gpu:
        headers += ["cupy ms", "speed-up", "TFLOP/s", "% FP64 peak", "% FP32 peak"]
        for cell, r in zip(cells, rows):
            cell += [r["cupy_ms"], r["speedup"], r["cupy_tflops"], 100 * r["share_of_fp64_peak"],
                     100 * r["share_of_fp32_peak"]]
        cupy.get_default_memory_pool().free_all_blocks()  # the prunes' GPU memory is sampled later
    else:
        result["note"] = note or "no GPU: CuPy columns and the GPU's GEMM peak not measured"
    say(table(headers, cells))
    return result


def digits_calibration(samples: int, workdir: str) -> tuple[str, str]:
    """A calibration file with `samples` samples, and where they came from."""
    import numpy as np

    committed = os.path.join(DIGITS, "digits_calib.npz")
    x = np.load(committed)["x"]
    if samples <= len(x):
        return committed, f"{samples} of the {len(x)} committed calibration samples"
    shifted = np.zeros_like(x)
    shifted[..., 1:] = x[..., :-1]  # one pixel right, zero fill: the images stay digits
    copies = [x, shifted]
    while sum(len(c) for c in copies) < samples:  # more than 512: further shifts
        copies.append(np.roll(copies[-1], 1, axis=-2))
    path = os.path.join(workdir, f"digits_calib_{samples}.npz")
    np.savez(path, x=np.concatenate(copies)[:samples])
    return path, f"{len(x)} committed calibration samples + {samples - len(x)} of them shifted one pixel right"


def section_digits(target: float, samples: int, workdir: str, timeout_s: float) -> dict:
    calib, source = digits_calibration(samples, workdir)
    out = os.path.join(workdir, "digits_everything.onnx")
    report = os.path.join(workdir, "digits_everything.json")
    argv = [sys.executable, "-m", "onnxprune.cli", "prune", os.path.join(DIGITS, "digits_resnet56.onnx"),
            "-o", out, "--method", "everything", "--target-flops", str(target), "--samples", str(samples),
            "--calib", calib, "--eval", os.path.join(DIGITS, "digits_test.npz"), "--report", report]
    say(f"digits ResNet-56, everything to -{100 * target:.0f} % MACs, {samples} samples ({source}) ...")
    run = run_measured(argv, os.path.join(workdir, "digits_everything.log"), timeout_s)
    result = {"target_flops": target, "samples": samples, "calibration": source, "goal_s": 10.0,
              **run, **report_summary(report)}
    for line in run["output_tail"]:
        say(f"    {line}")
    acc = [result.get("accuracy_before"), result.get("accuracy_after")]
    say(table(["seconds", "exit", "MACs reduction", "accuracy before", "accuracy after", "iterations",
               "peak RSS GiB", "GPU MiB peak (baseline)"],
              [[run["seconds"], run["exit_code"], result.get("macs_reduction"),
                *[None if a is None else round(a, 4) for a in acc], result.get("iterations"),
                run["peak_rss_gib"], _gpu_cell(run)]]))
    return result


def _gpu_cell(run: dict) -> str:
    if run["gpu_mem_peak_mib"] is None:
        return "n/a"
    return f"{run['gpu_mem_peak_mib']:.0f} ({run['gpu_mem_baseline_mib']:.0f})"


def section_transformer(kind: str, quick: bool, workdir: str, recover: str, timeout_s: float) -> dict:
    import transformer_graphs as tg

    if kind == "vit":
        sizes = dict(tg.VIT_B16, **(QUICK_VIT if quick else {}))
        shape = f"pixel_values=1,3,{sizes['image']},{sizes['image']}"
    else:
        sizes = dict(tg.DECODER_1B, **(QUICK_DECODER if quick else {}))
        shape = f"input_ids=1,{sizes['seq']}"
    path = os.path.join(workdir, f"{kind}.onnx")
    say(f"{kind} {sizes}: building ...")
    start = time.perf_counter()
    model = (tg.vit if kind == "vit" else tg.decoder)(**sizes, path=path)  # weights straight to path.data
    built = time.perf_counter() - start
    params, nodes = tg.parameters(model), len(model.graph.node)
    size = sum(os.path.getsize(p) for p in (path, path + ".data") if os.path.exists(p))
    say(f"  {params / 1e6:.1f} M parameters, {nodes} nodes, {size / GIB:.2f} GiB on disk (external data); "
        f"built and saved in {built:.1f} s")

    out = os.path.join(workdir, f"{kind}.pruned.onnx")
    report = os.path.join(workdir, f"{kind}.report.json")
    argv = [sys.executable, "-m", "onnxprune.cli", "prune", path, "-o", out, "--ratio", "0", "--heads", "0.25",
            "--channels", "0.25", "--hidden", "0", "--recover", recover, "--input-shape", shape, "--report", report]
    say(f"  pruning (heads 0.25, MLP 0.25, hidden width kept, recover {recover}) ...")
    run = run_measured(argv, os.path.join(workdir, f"{kind}.prune.log"), timeout_s)
    summary = report_summary(report)
    for line in run["output_tail"]:
        say(f"    {line}")
    for leftover in (out, out + ".data"):  # the disk holds several 4 GB copies otherwise
        if os.path.exists(leftover):
            os.remove(leftover)
    result = {"sizes": sizes, "parameters": params, "nodes": nodes, "bytes_on_disk": size,
              "build_s": round(built, 3), "recover": recover,
              **run, **summary}
    groups = summary.get("groups", {})
    say(table(["model", "params", "build s", "prune s", "exit", "peak RSS GiB", "GPU MiB peak (baseline)",
               "MACs reduction", "heads removed/total", "MLP neurons removed/total", "verified"],
              [[kind, f"{params / 1e6:.1f} M", round(built, 2), run["seconds"], run["exit_code"],
                run["peak_rss_gib"], _gpu_cell(run), summary.get("macs_reduction"),
                _removed(groups.get("heads")), _removed(groups.get("channels")), summary.get("verified")]]))
    return result


def _removed(kind: dict | None) -> str:
    if not kind:
        return "n/a"
    return f"{kind['removed']}/{kind['prunable_units']} in {kind['prunable_groups']} groups"


# --------------------------------------------------------------------------- main


def gpu_present() -> bool:
    from onnxprune.runtime.array_backend import cupy_available

    return cupy_available() or bool(nvidia_smi("name"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small models and a shorter digits run")
    parser.add_argument("--cpu", action="store_true", help="hide the GPU (CUDA_VISIBLE_DEVICES='')")
    parser.add_argument("--skip", nargs="+", default=[], choices=SECTIONS, metavar="SECTION",
                        help=f"sections to leave out: {', '.join(SECTIONS)}")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "gpu.json"), help="the JSON results")
    parser.add_argument("--workdir", default=None, help="where models are built (default: a temporary directory)")
    parser.add_argument("--digits-target", type=float, default=None, help="MACs to remove (default 0.8; quick 0.4)")
    parser.add_argument("--digits-samples", type=int, default=None, help="calibration samples (default 512; quick 128)")
    parser.add_argument("--transformer-recover", default="none", help="--recover for the ViT and decoder prunes")
    parser.add_argument("--timeout", type=float, default=420, help="seconds each prune may run before it is killed")
    args = parser.parse_args(argv)

    if args.cpu:
        # Before anything loads CUDA: this process (CuPy, ONNX Runtime) and the prunes it starts.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    gpu = not args.cpu and gpu_present()
    mode = "gpu" if gpu else ("cpu (--cpu)" if args.cpu else "cpu (no GPU found)")
    workdir = args.workdir or tempfile.mkdtemp(prefix="onnxprune-gpu-")
    os.makedirs(workdir, exist_ok=True)
    results: dict = {"format": "onnxprune.gpu-benchmark/1", "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                     "mode": mode, "quick": args.quick, "sections": {}, "failed": {}}
    say(f"onnxprune GPU benchmark: mode {mode}, quick={args.quick}, workdir {workdir}, out {args.out}")
    if not gpu and not args.quick:
        say("note: no GPU and no --quick: full sizes on the CPU (pruning the 1B decoder peaked at 6.6 GiB RSS on 2 cores)")

    digits_target = args.digits_target if args.digits_target is not None else (0.4 if args.quick else 0.8)
    digits_samples = args.digits_samples or (128 if args.quick else 512)
    runs = {
        "environment": lambda: section_environment(mode, gpu),
        "cka": lambda: section_cka(args.quick, gpu),
        "digits": lambda: section_digits(digits_target, digits_samples, workdir, args.timeout),
        "vit": lambda: section_transformer("vit", args.quick, workdir, args.transformer_recover, args.timeout),
        "decoder": lambda: section_transformer("decoder", args.quick, workdir, args.transformer_recover,
                                               args.timeout),
    }
    total = time.perf_counter()
    try:
        for name in SECTIONS:
            if name in args.skip:
                continue
            say(f"\n## {name}\n")
            start = time.perf_counter()
            try:
                results["sections"][name] = runs[name]()
                results["sections"][name]["section_s"] = round(time.perf_counter() - start, 3)
            except Exception as err:  # noqa: BLE001 - one broken section must not cost the others' numbers
                results["failed"][name] = f"{type(err).__name__}: {err}"
                say(f"FAILED: {results['failed'][name]}")
            say(f"({name}: {time.perf_counter() - start:.1f} s, {time.perf_counter() - total:.1f} s so far)")
            results["total_s"] = round(time.perf_counter() - total, 3)
            write_json(args.out, results)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    crashed = [n for n, s in results["sections"].items() if s.get("exit_code") not in (None, 0, 3)]
    say(f"\nwrote {args.out}; {len(results['sections'])} section(s) ran in {results.get('total_s', 0):.1f} s"
        + (f"; failed: {', '.join(results['failed'])}" if results["failed"] else "")
        + (f"; prune exited with an error: {', '.join(crashed)}" if crashed else ""))
    return 1 if results["failed"] or crashed else 0


if __name__ == "__main__":
    sys.exit(main())
