"""apply_plan on exports whose weights are renamed, without torch: the fixtures in
models/state_dict/ (see export_state_dict.py) carry the PyTorch state_dict as .npz.

- mlp.onnx (TorchScript) and mlp.dynamo.onnx: a Linear on 3-D input is MatMul of a
  pre-transposed constant (onnx::MatMul_N / val_N), mapped by the node's module scope
  (node name / pkg.torch.onnx.name_scopes) and sliced with its axes swapped;
- mlp.unfolded.onnx (TorchScript without constant folding): MatMul(x, Transpose(W)),
  which the analysis folds into a transposed constant, mapped the same way;
- cnn.dynamo.onnx: BatchNorm fused into the convs (conv names kept, BatchNorm scope on
  the node), Linear as Gemm.
Each sliced state_dict entry must equal the pruned model's initializer it came from, and
for the MLP the sliced state_dict, run in numpy, must compute the pruned model's outputs.
"""

from __future__ import annotations

import math
import os

import numpy as np
import onnx_ir as ir
import pytest

from onnxprune.compiler.pipeline import prune
from onnxprune.compiler.state_dict import apply_plan, node_scopes
from onnxprune.model_io import load_model
from onnxprune.runtime.session import ort_session, run_session

HERE = os.path.join(os.path.dirname(__file__), "..", "..", "models", "state_dict")
X_MLP = np.random.default_rng(0).standard_normal((2, 4, 12)).astype(np.float32)
_erf = np.vectorize(math.erf)


def _state(name: str) -> dict[str, np.ndarray]:
    with np.load(os.path.join(HERE, f"{name}.npz")) as f:
        return {k: f[k] for k in f.files}


def _initializers(model: ir.Model) -> dict[str, np.ndarray]:
    return {name: v.const_value.numpy() for name, v in model.graph.initializers.items()}


def _pruned_initializer(inits: dict, name: str) -> np.ndarray:
    # Sliced in place it keeps its name; a copy made per reader is `<name>_pruned`.
    return inits[name] if name in inits else inits[f"{name}_pruned"]


def _mlp_forward(sd: dict, x: np.ndarray) -> np.ndarray:
    """models/state_dict/export_state_dict.py's MLP in numpy, at whatever widths sd has."""
    def linear(h, p):
        return h @ sd[f"{p}.weight"].T + sd[f"{p}.bias"]

    h = linear(x, "embed")
    for b in ("blocks.0", "blocks.1"):
        mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        n = (h - mu) / np.sqrt(var + 1e-5) * sd[f"{b}.norm.weight"] + sd[f"{b}.norm.bias"]
        u = linear(n, f"{b}.fc1")
        h = h + linear(0.5 * u * (1 + _erf(u / math.sqrt(2))), f"{b}.fc2")
    return linear(h, "head")


def test_dynamo_scopes_from_metadata():
    model = load_model(os.path.join(HERE, "mlp.dynamo.onnx"))
    scopes = {n.op_type: node_scopes(n) for n in model.graph if n.op_type in ("MatMul", "LayerNormalization")}
    assert scopes["LayerNormalization"][-1].endswith(".norm")
    fc1 = [node_scopes(n) for n in model.graph if n.op_type == "MatMul"][1]
    assert fc1 == ["blocks", "blocks.0", "blocks.0.fc1"]


@pytest.mark.parametrize("file", ["mlp.onnx", "mlp.dynamo.onnx", "mlp.unfolded.onnx"])
def test_matmul_of_transposed_weight_maps_back(file):
    path = os.path.join(HERE, file)
    state = _state("mlp")
    result = prune(path, ratio=0.5)
    new, report = apply_plan(state, result.plan, path)
    assert not report["unmapped"], report["unmapped"]
    # The weights are renamed (or, unfolded, read through a Transpose that onnxprune folds
    # into a constant named after it): only the scope rule can have found them.
    assert not any(k.endswith(".weight") and k in _initializers(result.model) for k in state if ".fc" in k)
    for p in ("embed", "blocks.0.fc1", "blocks.0.fc2", "blocks.1.fc1", "blocks.1.fc2", "head"):
        assert report["sliced"][f"{p}.weight"].get("transposed"), p
    # Both LayerNorms read one initializer (identical initial values); both keys shrink.
    assert new["blocks.1.norm.weight"].shape == new["blocks.0.norm.weight"].shape
    assert new["blocks.0.fc1.weight"].shape[0] < state["blocks.0.fc1.weight"].shape[0]
    assert new["embed.weight"].shape[0] < state["embed.weight"].shape[0]
    inits = _initializers(result.model)
    for key, how in report["sliced"].items():
        name = how["from"].split(" (shared")[0]
        want = _pruned_initializer(inits, name)
        got = new[key].T if how.get("transposed") else new[key]
        np.testing.assert_array_equal(got, want, err_msg=key)
    # End to end: the sliced state_dict computes what the pruned ONNX model computes
    # (and the unsliced one does not even run at those widths).
    out = run_session(ort_session(result.model), {"input": X_MLP})["output"]
    np.testing.assert_allclose(_mlp_forward(new, X_MLP), out, rtol=1e-4, atol=1e-5 * np.abs(out).max())
    full = run_session(ort_session(load_model(path)), {"input": X_MLP})["output"]
    np.testing.assert_allclose(_mlp_forward(state, X_MLP), full, rtol=1e-4, atol=1e-5 * np.abs(full).max())


def test_dynamo_cnn_fused_batchnorm_and_gemm():
    path = os.path.join(HERE, "cnn.dynamo.onnx")
    state = _state("cnn")
    result = prune(path, ratio=0.5)
    new, report = apply_plan(state, result.plan, path)
    assert not report["unmapped"], report["unmapped"]
    inits = _initializers(result.model)
    for conv, bn in (("features.0", "features.1"), ("features.3", "features.4")):
        w, b = new[f"{conv}.weight"], new[f"{conv}.bias"]
        assert w.shape[0] < state[f"{conv}.weight"].shape[0]
        # The exporter folded the BatchNorm into the conv under the conv's names: folding
        # the sliced state_dict must give exactly the pruned model's conv.
        scale = new[f"{bn}.weight"] / np.sqrt(new[f"{bn}.running_var"] + 1e-5)
        np.testing.assert_allclose(w * scale[:, None, None, None], _pruned_initializer(inits, f"{conv}.weight"),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose((b - new[f"{bn}.running_mean"]) * scale + new[f"{bn}.bias"],
                                   _pruned_initializer(inits, f"{conv}.bias"), rtol=1e-5, atol=1e-6)
    for key in ("fc1.weight", "fc1.bias", "fc2.weight"):
        np.testing.assert_array_equal(new[key], _pruned_initializer(inits, key), err_msg=key)
    assert new["fc1.weight"].shape == (new["fc1.bias"].shape[0], new["features.3.weight"].shape[0])


@pytest.mark.parametrize("file", ["mlp.onnx", "mlp.dynamo.onnx", "mlp.unfolded.onnx"])
def test_dropped_block_maps_to_its_module(file):
    """A dropped residual block is the innermost module holding its whole branch: found
    from node names (TorchScript) or name-scope metadata (dynamo); drop_blocks removes
    exactly that module's parameters, and the numpy model without it computes what the
    ONNX model without the block computes."""
    from onnxprune.compiler.plan import PruningPlan
    from onnxprune.compiler.workspace import Workspace

    path = os.path.join(HERE, file)
    blocks = Workspace(path, None).blocks
    last = max(blocks, key=lambda b: b.id)
    plan = PruningPlan(blocks=[PruningPlan.block_entry(last)])
    state = _state("mlp")
    new, report = apply_plan(state, plan, path, drop_blocks=True)
    assert report["dropped_modules"] == ["blocks.1"]
    assert sorted(set(state) - set(new)) == sorted(k for k in state if k.startswith("blocks.1."))
    dropped = prune(path, plan=plan, recover="none")
    out = run_session(ort_session(dropped.model), {"input": X_MLP})["output"]

    def without_block_1(sd, x):  # the numpy MLP with blocks.1 as identity
        h = x @ sd["embed.weight"].T + sd["embed.bias"]
        mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        n = (h - mu) / np.sqrt(var + 1e-5) * sd["blocks.0.norm.weight"] + sd["blocks.0.norm.bias"]
        u = n @ sd["blocks.0.fc1.weight"].T + sd["blocks.0.fc1.bias"]
        h = h + (0.5 * u * (1 + _erf(u / math.sqrt(2)))) @ sd["blocks.0.fc2.weight"].T + sd["blocks.0.fc2.bias"]
        return h @ sd["head.weight"].T + sd["head.bias"]

    np.testing.assert_allclose(without_block_1(new, X_MLP), out, rtol=1e-4, atol=1e-5 * np.abs(out).max())
