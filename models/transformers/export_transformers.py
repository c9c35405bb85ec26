"""Export the transformer fixtures to ONNX, verify them, and write MANIFEST.json.

    python models/transformers/export_transformers.py              # everything
    python models/transformers/export_transformers.py gpt2 llama   # only these (the manifest keeps the others)

For each of bert, vit, gpt2, llama:
  <name>.onnx         TorchScript exporter (dynamo=False), opset 17, dynamic_axes
  <name>.dynamo.onnx  dynamo exporter (torch.export + onnxscript), its default opset,
                      torch.export.Dim for every dynamic axis, weights embedded
and bert_fused.onnx = bert.onnx through onnxruntime.transformers.optimizer (model_type
"bert"), which replaces subgraphs by com.microsoft fused ops.

Dynamic axes: "batch" and "seq" (input_ids/attention_mask [batch, seq]; ViT: only batch),
"past_seq" for the KV cache inputs [batch, kv_heads, past_seq, head_dim]; the present
outputs have past_seq + seq positions. Examples used for export: batch 2, seq 5, past 3.

A failed export is printed and recorded in the manifest; it does not stop the script.
Each file is checked with onnx.checker (full_check; without it when com.microsoft ops are
present, whose schemas onnx does not know) and run with onnxruntime at several
(batch, seq[, past]) combinations against PyTorch: for every output
max|ort - torch| <= 1e-4 * max|torch| + 1e-6.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import io
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
import zoo_transformers as zt  # noqa: E402

MANIFEST = os.path.join(HERE, "MANIFEST.json")
TS_OPSET = 17
RTOL = 1e-4
MAX_FILE = 1_000_000
EXPORT_BATCH, EXPORT_SEQ, EXPORT_PAST = 2, 5, 3
# (batch, seq, past) combinations checked against PyTorch; past is ignored without a KV cache.
# They include a decode step (seq 1) and an empty cache (past 0, prefill).
CHECKS = {
    "kv": [(1, 5, 3), (2, 7, 4), (2, 1, 6), (1, 4, 0)],
    "bert": [(1, 5, 0), (2, 7, 0), (3, 1, 0)],
    "vit": [(1, 0, 0), (2, 0, 0)],
}
FUSED_OPT_LEVEL = 1


def checks_for(name: str):
    return CHECKS["kv"] if name in zt.KV_CACHE else CHECKS[name]


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dims(vi) -> list:
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else None)
            for d in vi.type.tensor_type.shape.dim]


# ----------------------------------------------------------------------------- export
def dynamic_axes(name: str, model) -> dict:
    if name == "vit":
        return {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}
    if name == "bert":
        return {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "logits": {0: "batch"}}
    axes = {"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
    for n in zt.input_names(name, model)[1:]:
        axes[n] = {0: "batch", 2: "past_seq"}
    for n in zt.output_names(name, model)[1:]:
        axes[n] = {0: "batch", 2: "past_seq + seq"}  # the name the dynamo exporter derives
    return axes


def dynamic_shapes(name: str, model):
    from torch.export import Dim
    batch = Dim("batch", min=1, max=1024)
    if name == "vit":
        return ({0: batch},)
    seq = Dim("seq", min=1, max=zt.MAX_POS // 2)
    if name == "bert":
        return ({0: batch, 1: seq}, {0: batch, 1: seq})
    past = Dim("past_seq", min=0, max=zt.MAX_POS // 2 - 1)
    # forward(input_ids, *past): the varargs are one tuple in the dynamic_shapes structure
    return ({0: batch, 1: seq}, tuple({0: batch, 2: past} for _ in range(2 * model.num_layers)))


def export_torchscript(name: str, path: str) -> None:
    model = zt.build(name)
    x = zt.example_inputs(name, model, EXPORT_BATCH, EXPORT_SEQ, EXPORT_PAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, x, path, dynamo=False, opset_version=TS_OPSET,
            input_names=zt.input_names(name, model), output_names=zt.output_names(name, model),
            dynamic_axes=dynamic_axes(name, model), do_constant_folding=True,
        )


_PATH_IN_TRACE = re.compile(r'File "[^"]*?/(site-packages|models)/')


def scrub_paths(model: onnx.ModelProto) -> None:
    """Cut the absolute paths in the dynamo exporter's stack-trace metadata (as models/export_zoo.py does)."""
    for node in model.graph.node:
        for p in node.metadata_props:
            if p.key.endswith("stack_trace"):
                p.value = _PATH_IN_TRACE.sub(lambda m: f'File "{m.group(1)}/', p.value)


def export_dynamo(name: str, path: str) -> None:
    model = zt.build(name)
    x = zt.example_inputs(name, model, EXPORT_BATCH, EXPORT_SEQ, EXPORT_PAST)
    data_file = path + ".data"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            model, x, dynamo=True, external_data=False,
            input_names=zt.input_names(name, model), output_names=zt.output_names(name, model),
            dynamic_shapes=dynamic_shapes(name, model), report=False, verify=False,
        )
        prog.save(path, external_data=False)
    m = onnx.load(path)
    scrub_paths(m)
    onnx.save(m, path)
    if os.path.exists(data_file):
        os.remove(data_file)
        raise RuntimeError("dynamo exporter wrote external data despite external_data=False")


def _optimize_bert(src: str):
    from onnxruntime.transformers.optimizer import optimize_model
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        opt = optimize_model(src, model_type="bert", num_heads=4, hidden_size=64, opt_level=FUSED_OPT_LEVEL,
                             use_gpu=False, only_onnxruntime=False)
        stats = opt.get_fused_operator_statistics()
    return opt.model, {k: v for k, v in sorted(stats.items()) if v}


def fuse_bert(src: str, path: str, dynamo_src: str) -> dict:
    """bert.onnx -> onnxruntime.transformers.optimizer(model_type="bert") -> bert_fused.onnx (saved as returned).

    Also records what the same optimizer fuses in the dynamo export (not saved).
    """
    model, stats = _optimize_bert(src)
    onnx.save(model, path)
    extra = {"fused_operator_statistics": stats}
    if os.path.exists(dynamo_src):
        extra["same_optimizer_on_bert.dynamo.onnx"] = _optimize_bert(dynamo_src)[1]
    return extra


# ----------------------------------------------------------------------------- verify
def uses_contrib_ops(m: onnx.ModelProto) -> bool:
    return any(n.domain not in ("", "ai.onnx") for n in m.graph.node)


def verify(name: str, path: str) -> float:
    """onnx.checker + ORT at every combination in CHECKS against PyTorch. Returns the worst relative error."""
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=not uses_contrib_ops(m))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    model = zt.build(name)
    in_names = zt.input_names(name, model)
    assert [i.name for i in sess.get_inputs()] == in_names, (path, [i.name for i in sess.get_inputs()])
    worst = 0.0
    for batch, seq, past in checks_for(name):
        x = zt.example_inputs(name, model, batch, seq, past)
        with torch.no_grad():
            ref = model(*x)
        ref = [t.numpy() for t in (ref if isinstance(ref, tuple) else (ref,))]
        got = sess.run(None, {n: t.numpy() for n, t in zip(in_names, x)})
        assert len(got) == len(ref)
        for o, (g, r) in enumerate(zip(got, ref)):
            assert g.shape == r.shape, (path, (batch, seq, past), o, g.shape, r.shape)
            err = float(np.abs(g - r).max()) if r.size else 0.0
            scale = float(np.abs(r).max()) if r.size else 0.0
            assert err <= RTOL * scale + 1e-6, \
                f"{path} {(batch, seq, past)} output {o}: err {err:.3e}, max|ref| {scale:.3e}"
            worst = max(worst, err / max(scale, 1e-12))
    return worst


def describe(path: str, name: str, exporter: str, rel_err: float) -> dict:
    m = onnx.load(path)
    ops = collections.Counter((f"{n.domain}::" if n.domain not in ("", "ai.onnx") else "") + n.op_type
                              for n in m.graph.node)
    return {
        "name": name,
        "file": os.path.basename(path),
        "exporter": exporter,
        "opset": {o.domain or "ai.onnx": o.version for o in m.opset_import}.get("ai.onnx"),
        "opset_imports": {o.domain or "ai.onnx": o.version for o in sorted(m.opset_import, key=lambda o: o.domain)},
        "ir_version": m.ir_version,
        "inputs": [{"name": i.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type).name,
                    "shape": _dims(i)} for i in m.graph.input],
        "outputs": [{"name": o.name, "shape": _dims(o)} for o in m.graph.output],
        "node_count": len(m.graph.node),
        "op_types": dict(sorted(ops.items())),
        "initializer_count": len(m.graph.initializer),
        # counts a tied weight twice where the exporter wrote a transposed copy (gpt2's LM head)
        "float_initializer_elements": int(sum(np.prod(t.dims) for t in m.graph.initializer
                                              if t.data_type == onnx.TensorProto.FLOAT)),
        "file_size": os.path.getsize(path),
        "sha256": sha256(path),
        "checks": [list(c) for c in checks_for(name)],
        "max_rel_err_vs_torch": float(f"{rel_err:.3e}"),
    }


def _record_failure(failures: dict, key: str, path: str, e: Exception) -> None:
    msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    failures[key] = msg
    traceback.print_exc()
    print(f"[FAIL] {os.path.basename(path)}: {msg}")
    for p in (path, path + ".data"):
        if os.path.exists(p):
            os.remove(p)


def _step(files: dict, failures: dict, name: str, exporter: str, path: str, make) -> bool:
    key = os.path.basename(path)
    files.pop(key, None)
    failures.pop(key, None)
    try:
        extra = make() or {}
        entry = describe(path, name, exporter, verify(name, path))
        entry.update(extra)
        assert entry["file_size"] < MAX_FILE, f"{key} is {entry['file_size']} bytes (limit {MAX_FILE})"
        files[key] = entry
        print(f"[ok] {key}  {entry['file_size'] / 1e3:.0f} kB  {entry['node_count']} nodes  "
              f"err {entry['max_rel_err_vs_torch']:.1e}")
        return True
    except Exception as e:  # noqa: BLE001 - report and carry on
        _record_failure(failures, key, path, e)
        return False


def main(names: list[str]) -> int:
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    old = {}
    if os.path.exists(MANIFEST):
        with open(MANIFEST) as f:
            old = json.load(f)
    files = {e["file"]: e for e in old.get("files", [])}
    failures = dict(old.get("failures", {}))
    for name in names:
        if name == "bert_fused":
            continue
        ts = os.path.join(HERE, f"{name}.onnx")
        ok = _step(files, failures, name, "torchscript", ts, lambda: export_torchscript(name, ts))
        dy = os.path.join(HERE, f"{name}.dynamo.onnx")
        _step(files, failures, name, "dynamo", dy, lambda: export_dynamo(name, dy))
        if name == "bert" and ok:
            fused = os.path.join(HERE, "bert_fused.onnx")

            def make_fused():
                extra = fuse_bert(ts, fused, dy)
                return {"name": "bert_fused", "source": "bert.onnx", "optimizer": "onnxruntime.transformers.optimizer",
                        "optimizer_args": {"model_type": "bert", "num_heads": 4, "hidden_size": 64,
                                           "opt_level": FUSED_OPT_LEVEL, "use_gpu": False}, **extra}

            _step(files, failures, "bert", "torchscript+ort_transformers_optimizer", fused, make_fused)

    manifest = {
        "generated_by": "models/transformers/export_transformers.py",
        "seed": zt.SEED,
        "torch": torch.__version__.split("+")[0],
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "export_example": {"batch": EXPORT_BATCH, "seq": EXPORT_SEQ, "past_seq": EXPORT_PAST},
        "tolerance": f"per output max|ort - torch| <= {RTOL} * max|torch| + 1e-6 "
                     "at every (batch, seq, past) in 'checks'",
        "files": [files[k] for k in sorted(files)],
        "failures": dict(sorted(failures.items())),
    }
    with open(MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(e["file_size"] for e in manifest["files"])
    print(f"wrote {MANIFEST}: {len(manifest['files'])} files, {total / 1e6:.2f} MB, "
          f"{len(manifest['failures'])} failures")
    return 1 if manifest["failures"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(zt.ZOO)))
