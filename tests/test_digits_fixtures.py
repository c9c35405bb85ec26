"""The committed digits models (models/digits/) are intact, accurate and consistent.

ResNet-20 / -56 / -110 on scikit-learn's 8x8 digits, regenerated with
`python models/digits/train_digits.py [--depth 56|110 --threads 1]`. The ONNX checks need
only onnx + onnxruntime; the .pt (state_dict) checks skip without torch.
"""
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import pytest

DIGITS = Path(__file__).resolve().parents[1] / "models" / "digits"
# (depth, meta file); the ResNet-20 has no .pt (its meta predates it)
MODELS = [(20, "digits_meta.json"), (56, "digits_resnet56_meta.json"), (110, "digits_resnet110_meta.json")]
IDS = [f"resnet{d}" for d, _ in MODELS]
DEEP = [(d, m) for d, m in MODELS if d != 20]
DEEP_IDS = [f"resnet{d}" for d, _ in DEEP]
MAX_BYTES = 9 * 1024 * 1024  # per file; the largest is digits_resnet110.pt (8.2 MB)


def _meta(name: str) -> dict:
    return json.loads((DIGITS / name).read_text())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _test_split():
    with np.load(DIGITS / "digits_test.npz") as d:
        return d["x"], d["y"]


def _digits_data():
    """models/digits/digits_data.py loaded by path (the repo root need not be on sys.path)."""
    spec = importlib.util.spec_from_file_location("_test_digits_data", DIGITS / "digits_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("depth,meta_name", MODELS, ids=IDS)
def test_digits_onnx(depth, meta_name):
    meta = _meta(meta_name)
    path = DIGITS / meta["file"]
    assert path.stat().st_size <= MAX_BYTES
    assert _sha256(path) == meta["sha256"]
    assert meta["architecture"]["depth"] == depth and meta["seed"] == 0
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "input" and out.name == "logits"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 8, 8]
    assert sum(n.op_type == "Conv" for n in model.graph.node) == depth  # stem + 2 per block (3n blocks) + 1 projection

    x, y = _test_split()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = sess.run(["logits"], {"input": x})[0]
    assert logits.shape == (len(y), 10)
    acc = float((logits.argmax(1) == y).mean())
    assert acc >= meta["test_accuracy"] - 0.005
    assert acc >= 0.97
    one = sess.run(["logits"], {"input": x[:1]})[0]
    np.testing.assert_allclose(one, logits[:1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("depth,meta_name", DEEP, ids=DEEP_IDS)
def test_digits_pt_file(depth, meta_name):
    meta = _meta(meta_name)
    pt = meta["pytorch"]
    path = DIGITS / pt["file"]
    assert path.name == f"digits_resnet{depth}.pt"
    assert path.stat().st_size == pt["file_size"] <= MAX_BYTES
    assert _sha256(path) == pt["sha256"]
    assert meta["file_size"] == (DIGITS / meta["file"]).stat().st_size


@pytest.mark.parametrize("depth,meta_name", DEEP, ids=DEEP_IDS)
def test_digits_state_dict_matches_onnx(depth, meta_name):
    torch = pytest.importorskip("torch")
    meta = _meta(meta_name)
    state = torch.load(DIGITS / meta["pytorch"]["file"], map_location="cpu", weights_only=True)
    assert len(state) == meta["pytorch"]["state_dict_tensors"]
    convs = {k: v for k, v in state.items() if k.endswith(".weight") and v.ndim == 4}
    bns = {k: v for k, v in state.items() if k.endswith(".running_var")}
    assert len(convs) == len(bns) == depth  # every conv is followed by a BN (folded in the ONNX)
    assert tuple(state["fc.weight"].shape) == (10, 64)

    model = onnx.load(str(DIGITS / meta["file"]))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    conv_nodes = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(conv_nodes) == len(convs)
    # Conv weight shapes in order (TorchScript renames folded weights, so compare shapes, not names)
    assert [tuple(inits[n.input[1]].shape) for n in conv_nodes] == [tuple(v.shape) for v in convs.values()]
    # every element: conv weights + one folded bias per BN channel + fc weight and bias
    n_onnx = sum(a.size for a in inits.values())
    n_torch = sum(v.numel() for v in convs.values()) + sum(v.numel() for v in bns.values()) + 10 * 64 + 10
    assert n_onnx == n_torch == meta["architecture"]["params"] - sum(v.numel() for v in bns.values())
    (gemm,) = [n for n in model.graph.node if n.op_type == "Gemm"]
    np.testing.assert_array_equal(inits[gemm.input[1]], state["fc.weight"].numpy())

    # The state_dict, loaded into the digits model, computes what the ONNX computes.
    torch.set_num_threads(1)
    net = _digits_data().load_trained(depth, str(DIGITS / meta["pytorch"]["file"]))
    x, _ = _test_split()
    x = x[:64]
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(DIGITS / meta["file"]), providers=["CPUExecutionProvider"]).run(
        ["logits"], {"input": x})[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * max(1.0, float(np.abs(ref).max())))
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_digits_data_module_matches_committed_splits():
    """digits_data.load_splits() (the fine-tuning hook's data) equals the committed npz splits."""
    pytest.importorskip("sklearn")
    dd = _digits_data()
    splits = dd.load_splits()
    assert {k: len(v[1]) for k, v in splits.items()} == _meta("digits_meta.json")["splits"]
    for name in ("calib", "test"):
        x, y = dd.load_split_file(name)
        np.testing.assert_array_equal(splits[name][0], x)
        np.testing.assert_array_equal(splits[name][1], y)
    assert [dd.model_name(d) for d, _ in MODELS] == ["digits_resnet", "digits_resnet56", "digits_resnet110"]
