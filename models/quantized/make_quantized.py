"""Quantized (int8) and float16 versions of three reference models.

    # int8 (onnxruntime.quantization): the project venv is enough
    .venv/bin/python models/quantized/make_quantized.py quant
    # float16 (onnxconverter-common): a separate venv
    python3 -m venv /work/venvs/quant
    /work/venvs/quant/bin/pip install onnxconverter-common==1.16.0 onnx==1.23.2 onnxruntime==1.32.0
    /work/venvs/quant/bin/python models/quantized/make_quantized.py fp16

Each section rewrites only its own files and its own entries in MANIFEST.json.

Sources: models/zoo/resnet20.onnx, models/zoo/mobilenetv2.onnx (TorchScript exports, opset
17, input "input" float32 [batch, 3, 32, 32]) and models/transformers/bert.onnx (input_ids,
attention_mask int64 [batch, seq], vocab 128).

quant:
  resnet20.qdq.onnx        quantize_static, QDQ, per-tensor weights and activations (S8S8)
  resnet20.qdq_pc.onnx     quantize_static, QDQ, per-channel weights (S8S8)
  mobilenetv2.qdq_pc.onnx  quantize_static, QDQ, per-channel weights (S8S8)
  resnet20.qop.onnx        quantize_static, QOperator (QLinearConv, QLinearAdd, ...), U8S8
  bert.dynamic.onnx        quantize_dynamic (DynamicQuantizeLinear + MatMulInteger), S8 weights
  resnet20_calib.npy       64 seeded random inputs float32 [64, 3, 32, 32] (for the fp32-input
                           files above and resnet20.fp16io32.onnx; same input as mobilenetv2)
  bert.dynamic_calib.npz   input_ids (random ids < 128) and attention_mask (ones), int64 [64, 5]
fp16:
  resnet20.fp16.onnx, mobilenetv2.fp16.onnx   float16 weights, activations, inputs and outputs
                                              (convert_float_to_float16, keep_io_types=False)
  resnet20.fp16io32.onnx                      the same with float32 inputs/outputs (keep_io_types=True)
  resnet20.fp16_calib.npy, mobilenetv2.fp16_calib.npy   64 seeded random inputs, float16
  resnet20.fp16io32_calib.npy                 64 seeded random inputs, float32

Static quantization calibrates (MinMax) on 32 seeded random N(0, 1) inputs of batch 1.
Every file is checked: onnxruntime runs it, and the max abs difference of its output against
the float model on one random input (seed 1234; batch 1; bert 1x5) is recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from importlib.metadata import version

import numpy as np
import onnx
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SRC = {
    "resnet20": os.path.join(ROOT, "models", "zoo", "resnet20.onnx"),
    "mobilenetv2": os.path.join(ROOT, "models", "zoo", "mobilenetv2.onnx"),
    "bert": os.path.join(ROOT, "models", "transformers", "bert.onnx"),
}
IMG = (3, 32, 32)
SEED = 0
CHECK_SEED = 1234


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def io_desc(values) -> list:
    out = []
    for v in values:
        t = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
        out.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": dims})
    return out


def run(path: str, feeds: dict) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def image_feed(dtype=np.float32) -> dict:
    x = np.random.default_rng(CHECK_SEED).standard_normal((1, *IMG)).astype(np.float32)
    return {"input": x.astype(dtype)}


def bert_feed(rng: np.random.Generator, n: int = 1) -> dict:
    return {
        "input_ids": rng.integers(0, 128, size=(n, 5), dtype=np.int64),
        "attention_mask": np.ones((n, 5), dtype=np.int64),
    }


def describe(path: str, source: str, how: str, float_out: np.ndarray, out: np.ndarray, calib: str | None) -> dict:
    m = onnx.load(path)
    ops: dict = {}
    for n in m.graph.node:
        key = n.op_type if not n.domain else f"{n.domain}::{n.op_type}"
        ops[key] = ops.get(key, 0) + 1
    size = os.path.getsize(path)
    assert size < 2_000_000, (path, size)
    diff = float(np.max(np.abs(out.astype(np.float32) - float_out)))
    entry = {
        "file": os.path.basename(path),
        "source": os.path.relpath(source, ROOT),
        "how": how,
        "size": size,
        "sha256": sha256(path),
        "inputs": io_desc(m.graph.input),
        "outputs": io_desc(m.graph.output),
        "opset": {d.domain or "ai.onnx": d.version for d in m.opset_import},
        "ir_version": m.ir_version,
        "node_count": len(m.graph.node),
        "op_types": dict(sorted(ops.items())),
        "max_abs_diff_vs_float": diff,
        "max_abs_float_output": float(np.max(np.abs(float_out))),
        "calib": calib,
    }
    print(f"{entry['file']}: {size} B, {len(m.graph.node)} nodes, max|diff| {diff:.4g} "
          f"(float max|out| {entry['max_abs_float_output']:.4g})")
    return entry


def save_calib(name: str, arr: np.ndarray) -> dict:
    path = os.path.join(HERE, name)
    np.save(path, arr)
    return {"file": name, "size": os.path.getsize(path), "sha256": sha256(path),
            "shape": list(arr.shape), "dtype": arr.dtype.name,
            "what": f"np.random.default_rng({SEED}).standard_normal, cast to {arr.dtype.name}"}


def section_quant() -> list:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    class RandomReader(CalibrationDataReader):
        def __init__(self, n: int = 32):
            rng = np.random.default_rng(SEED)
            self.batches = [{"input": rng.standard_normal((1, *IMG)).astype(np.float32)} for _ in range(n)]
            self.it = iter(self.batches)

        def get_next(self):
            return next(self.it, None)

        def rewind(self):
            self.it = iter(self.batches)

    entries = []
    float_img = {k: run(SRC[k], image_feed()) for k in ("resnet20", "mobilenetv2")}
    jobs = [
        ("resnet20.qdq.onnx", "resnet20", QuantFormat.QDQ, False, QuantType.QInt8),
        ("resnet20.qdq_pc.onnx", "resnet20", QuantFormat.QDQ, True, QuantType.QInt8),
        ("mobilenetv2.qdq_pc.onnx", "mobilenetv2", QuantFormat.QDQ, True, QuantType.QInt8),
        ("resnet20.qop.onnx", "resnet20", QuantFormat.QOperator, False, QuantType.QUInt8),
    ]
    for out_name, src, fmt, per_channel, act in jobs:
        path = os.path.join(HERE, out_name)
        quantize_static(
            SRC[src], path, RandomReader(), quant_format=fmt, per_channel=per_channel,
            activation_type=act, weight_type=QuantType.QInt8,
        )
        onnx.checker.check_model(path)
        how = (f"quantize_static(quant_format={fmt.name}, per_channel={per_channel}, "
               f"activation_type={act.name}, weight_type=QInt8, MinMax on 32 random inputs)")
        entries.append(describe(path, SRC[src], how, float_img[src], run(path, image_feed()), "resnet20_calib.npy"))

    path = os.path.join(HERE, "bert.dynamic.onnx")
    quantize_dynamic(SRC["bert"], path, weight_type=QuantType.QInt8)
    onnx.checker.check_model(path)
    feed = bert_feed(np.random.default_rng(CHECK_SEED))
    entries.append(describe(path, SRC["bert"], "quantize_dynamic(weight_type=QInt8)",
                            run(SRC["bert"], feed), run(path, feed), "bert.dynamic_calib.npz"))

    entries.append(save_calib("resnet20_calib.npy",
                              np.random.default_rng(SEED).standard_normal((64, *IMG)).astype(np.float32)))
    cpath = os.path.join(HERE, "bert.dynamic_calib.npz")
    np.savez(cpath, **bert_feed(np.random.default_rng(SEED), 64))
    entries.append({"file": "bert.dynamic_calib.npz", "size": os.path.getsize(cpath), "sha256": sha256(cpath),
                    "arrays": {"input_ids": {"shape": [64, 5], "dtype": "int64"},
                               "attention_mask": {"shape": [64, 5], "dtype": "int64"}},
                    "what": "random ids in [0, 128) (seed 0), mask all ones"})
    return entries


def section_fp16() -> list:
    from onnxconverter_common import float16

    entries = []
    jobs = [
        ("resnet20.fp16.onnx", "resnet20", False),
        ("mobilenetv2.fp16.onnx", "mobilenetv2", False),
        ("resnet20.fp16io32.onnx", "resnet20", True),
    ]
    for out_name, src, keep_io in jobs:
        path = os.path.join(HERE, out_name)
        model = float16.convert_float_to_float16(onnx.load(SRC[src]), keep_io_types=keep_io)
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, path)
        dtype = np.float32 if keep_io else np.float16
        stem = out_name[: -len(".onnx")]
        calib = f"{stem}_calib.npy"
        entries.append(save_calib(calib, np.random.default_rng(SEED).standard_normal((64, *IMG)).astype(dtype)))
        how = f"onnxconverter_common.float16.convert_float_to_float16(keep_io_types={keep_io})"
        entries.append(describe(path, SRC[src], how, run(SRC[src], image_feed()), run(path, image_feed(dtype)), calib))
    return entries


def main() -> None:
    sections = sys.argv[1:] or ["quant", "fp16"]
    mpath = os.path.join(HERE, "MANIFEST.json")
    manifest = json.load(open(mpath)) if os.path.exists(mpath) else {"files": [], "tools": {}}
    manifest["generated_by"] = "models/quantized/make_quantized.py"
    manifest["seed"] = SEED
    manifest["check"] = (f"max_abs_diff_vs_float: one N(0,1) input (seed {CHECK_SEED}, batch 1; bert: random ids "
                         "1x5, mask ones), this file's first output vs the float source's, in onnxruntime")
    for section in sections:
        new = {"quant": section_quant, "fp16": section_fp16}[section]()
        names = {e["file"] for e in new}
        manifest["files"] = [e for e in manifest["files"] if e["file"] not in names] + new
        pkgs = ["onnx", "onnxruntime", "numpy"] + (["onnxconverter-common"] if section == "fp16" else [])
        manifest["tools"][section] = {p: version(p) for p in pkgs}
        manifest["tools"][section]["python"] = sys.version.split()[0]
    manifest["files"].sort(key=lambda e: e["file"])
    with open(mpath, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
