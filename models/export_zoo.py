"""Export every zoo model to ONNX, verify it, and write models/zoo/MANIFEST.json.

    python models/export_zoo.py            # regenerate everything
    python models/export_zoo.py vgg convnext   # only these (the manifest keeps the others)

For each model:
  zoo/<name>.onnx         TorchScript exporter (dynamo=False), opset 17, dynamic_axes batch
  zoo/<name>.dynamo.onnx  dynamo exporter (torch.export + onnxscript), its default opset,
                          dynamic_shapes batch, weights embedded (external_data=False)
A dynamo failure is printed and recorded in the manifest; it does not stop the script.
Each file is checked with onnx.checker (full_check) and run with onnxruntime at batch 1
and 2; the outputs must match PyTorch: max|ort - torch| <= 1e-4 * max|torch| (+1e-6).
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import sys
import traceback
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import zoo  # noqa: E402

OUT_DIR = os.path.join(HERE, "zoo")
MANIFEST = os.path.join(OUT_DIR, "MANIFEST.json")
TS_OPSET = 17
RTOL = 1e-4
# Size budget for models/ (~15 MB): resnet56 is 3.4 MB per file at its exact standard
# width and depth; its dynamo export is structurally identical to resnet20.dynamo.onnx
# (same block, 3x as many), so it is not written twice.
SKIP_DYNAMO = {"resnet56": "skipped to stay within the models/ size budget; resnet20.dynamo.onnx has the same structure"}


def output_name(name: str) -> str:
    return "output" if name == "yolov8_c2f" else "logits"


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dims(vi) -> list:
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else None)
            for d in vi.type.tensor_type.shape.dim]


def export_torchscript(model, shape, name, path):
    x = torch.randn(2, *shape)
    out = output_name(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), path, dynamo=False, opset_version=TS_OPSET,
            input_names=["input"], output_names=[out],
            dynamic_axes={"input": {0: "batch"}, out: {0: "batch"}},
            do_constant_folding=True,
        )


_PATH_IN_TRACE = re.compile(r'File "[^"]*?/(site-packages|models)/')


def scrub_paths(model: onnx.ModelProto) -> None:
    """Make the dynamo exporter's stack-trace metadata machine-independent.

    Every node carries pkg.torch.onnx.stack_trace with absolute file paths (the checkout,
    the Python prefix); keep the metadata (real exports have it) but cut each path to
    'site-packages/...' or 'models/...' so the bytes, and the sha256, do not depend on
    where the script ran.
    """
    for node in model.graph.node:
        for p in node.metadata_props:
            if p.key.endswith("stack_trace"):
                p.value = _PATH_IN_TRACE.sub(lambda m: f'File "{m.group(1)}/', p.value)


def export_dynamo(model, shape, name, path):
    x = torch.randn(2, *shape)
    batch = torch.export.Dim("batch", min=1, max=4096)
    data_file = path + ".data"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            model, (x,), dynamo=True, external_data=False,
            input_names=["input"], output_names=[output_name(name)],
            dynamic_shapes=({0: batch},), report=False, verify=False,
        )
        prog.save(path, external_data=False)
    m = onnx.load(path)
    scrub_paths(m)
    onnx.save(m, path)
    if os.path.exists(data_file):  # never leave a side file behind
        os.remove(data_file)
        raise RuntimeError("dynamo exporter wrote external data despite external_data=False")


def verify(model, shape, path):
    """onnx.checker + ORT at batch 1 and 2 against PyTorch. Returns the max relative error."""
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(1234)
    worst = 0.0
    for n in (1, 2):
        x = torch.randn((n, *shape), generator=g)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {"input": x.numpy()})[0]
        assert got.shape == ref.shape, (path, got.shape, ref.shape)
        err = float(np.abs(got - ref).max())
        scale = float(np.abs(ref).max())
        assert err <= RTOL * scale + 1e-6, f"{path}: max abs err {err:.3e} vs max |ref| {scale:.3e}"
        worst = max(worst, err / max(scale, 1e-12))
    return worst


def describe(path: str, name: str, exporter: str, rel_err: float) -> dict:
    m = onnx.load(path)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    opset = {o.domain or "ai.onnx": o.version for o in m.opset_import}
    return {
        "name": name,
        "file": os.path.basename(path),
        "exporter": exporter,
        "opset": opset.get("ai.onnx"),
        "inputs": [{"name": i.name, "shape": _dims(i)} for i in m.graph.input],
        "outputs": [{"name": o.name, "shape": _dims(o)} for o in m.graph.output],
        "node_count": len(m.graph.node),
        "op_types": dict(sorted(ops.items())),
        "initializer_count": len(m.graph.initializer),
        "file_size": os.path.getsize(path),
        "sha256": sha256(path),
        "max_rel_err_vs_torch": float(f"{rel_err:.3e}"),
    }


def concrete_shape(dims: list, batch: int) -> list:
    return [batch if not isinstance(d, int) else d for d in dims]


def main(names: list[str]) -> int:
    os.makedirs(OUT_DIR, exist_ok=True)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    old = {}
    if os.path.exists(MANIFEST):
        with open(MANIFEST) as f:
            old = json.load(f)
    files = {e["file"]: e for e in old.get("files", [])}
    failures = dict(old.get("dynamo_failures", {}))
    status = 0
    for name in names:
        model, shape = zoo.build(name)
        ts_path = os.path.join(OUT_DIR, f"{name}.onnx")
        export_torchscript(model, shape, name, ts_path)
        files[os.path.basename(ts_path)] = describe(ts_path, name, "torchscript", verify(model, shape, ts_path))
        print(f"[ok] {name}.onnx  {os.path.getsize(ts_path) / 1e6:.2f} MB")

        dy_path = os.path.join(OUT_DIR, f"{name}.dynamo.onnx")
        files.pop(os.path.basename(dy_path), None)
        failures.pop(name, None)
        if name in SKIP_DYNAMO:
            failures[name] = SKIP_DYNAMO[name]
            if os.path.exists(dy_path):
                os.remove(dy_path)
            print(f"[skip] {name}.dynamo.onnx: {SKIP_DYNAMO[name]}")
            continue
        try:
            model, shape = zoo.build(name)  # fresh module: export may mutate/trace it
            export_dynamo(model, shape, name, dy_path)
            files[os.path.basename(dy_path)] = describe(dy_path, name, "dynamo", verify(model, shape, dy_path))
            print(f"[ok] {name}.dynamo.onnx  {os.path.getsize(dy_path) / 1e6:.2f} MB")
        except Exception as e:  # noqa: BLE001 - report and carry on
            msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            failures[name] = msg
            traceback.print_exc()
            print(f"[FAIL] {name}.dynamo.onnx: {msg}")
            for p in (dy_path, dy_path + ".data"):
                if os.path.exists(p):
                    os.remove(p)

    manifest = {
        "generated_by": "models/export_zoo.py",
        "seed": zoo.SEED,
        "torch": torch.__version__.split("+")[0],
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "tolerance": f"max|ort - torch| <= {RTOL} * max|torch| + 1e-6, batch 1 and 2",
        "files": [files[k] for k in sorted(files)],
        "dynamo_failures": dict(sorted(failures.items())),
    }
    with open(MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(e["file_size"] for e in manifest["files"])
    print(f"wrote {MANIFEST}: {len(manifest['files'])} files, {total / 1e6:.2f} MB")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(zoo.ZOO)))
