"""The committed transformer fixtures (models/transformers/) are intact and runnable -- without torch.

Regenerate with `python models/transformers/export_transformers.py`.
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

HERE = Path(__file__).resolve().parents[1] / "models" / "transformers"
MANIFEST = json.loads((HERE / "MANIFEST.json").read_text())
ENTRIES = MANIFEST["files"]
BY_FILE = {e["file"]: e for e in ENTRIES}
MAX_FILE = 1_000_000
MAX_TOTAL = 6 * 1024 * 1024
VOCAB = 128
KV_MODELS = {"gpt2", "llama"}
# (batch, seq, past_seq); past_seq only matters for the KV-cache models
COMBOS = [(1, 5, 3), (2, 7, 4)]
KV_EXTRA = [(2, 1, 6), (1, 4, 0)]  # a decode step, and an empty cache (prefill)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _feeds(entry: dict, batch: int, seq: int, past: int, rng: np.random.Generator) -> dict:
    """Inputs shaped from the manifest's symbolic dims. The bert mask is right-padded (see README)."""
    sizes = {"batch": batch, "seq": seq, "past_seq": past}
    feeds = {}
    for inp in entry["inputs"]:
        shape = [sizes[d] if isinstance(d, str) else d for d in inp["shape"]]
        if inp["name"] == "input_ids":
            feeds[inp["name"]] = rng.integers(0, VOCAB, shape, dtype=np.int64)
        elif inp["name"] == "attention_mask":
            mask = np.ones(shape, dtype=np.int64)
            if seq > 1:
                mask[-1, seq // 2:] = 0
            feeds[inp["name"]] = mask
        else:
            feeds[inp["name"]] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _family(entry) -> str:
    return entry["name"].replace("_fused", "")


def _combos(entry):
    return COMBOS + (KV_EXTRA if _family(entry) in KV_MODELS else [])


def test_manifest_lists_every_file():
    on_disk = {p.name for p in HERE.glob("*.onnx")}
    assert on_disk == set(BY_FILE)
    assert not list(HERE.glob("*.data")), "weights must be embedded, no external data files"
    expected = {f"{n}{suffix}" for n in ("bert", "vit", "gpt2", "llama") for suffix in (".onnx", ".dynamo.onnx")}
    assert expected | {"bert_fused.onnx"} == set(BY_FILE) - set(MANIFEST["failures"])
    assert MANIFEST["failures"] == {}
    assert sum(p.stat().st_size for p in HERE.iterdir() if p.is_file()) < MAX_TOTAL


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_file_matches_manifest_and_checks(entry):
    path = HERE / entry["file"]
    assert path.stat().st_size == entry["file_size"] < MAX_FILE
    assert _sha256(path) == entry["sha256"]
    model = onnx.load(str(path))
    contrib = any(n.domain not in ("", "ai.onnx") for n in model.graph.node)
    # onnx has no schemas for com.microsoft ops, so strict shape inference cannot run there
    onnx.checker.check_model(model, full_check=not contrib)
    assert len(model.graph.node) == entry["node_count"]
    assert [i.name for i in model.graph.input] == [i["name"] for i in entry["inputs"]]
    assert [o.name for o in model.graph.output] == [o["name"] for o in entry["outputs"]]


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_symbolic_dims(entry):
    ins = {i["name"]: i["shape"] for i in entry["inputs"]}
    family = _family(entry)
    if family == "vit":
        assert ins == {"pixel_values": ["batch", 3, 32, 32]}
        return
    assert ins["input_ids"] == ["batch", "seq"]
    if family == "bert":
        assert ins["attention_mask"] == ["batch", "seq"]
        return
    kv_heads = {"gpt2": 4, "llama": 2}[family]
    for name, shape in ins.items():
        if name.startswith("past_"):
            assert shape == ["batch", kv_heads, "past_seq", 16], name
    for out in entry["outputs"]:
        if out["name"].startswith("present_"):
            b, h, t, d = out["shape"]
            # dynamo spells the sum either way round ("past_seq + seq" or "seq + past_seq")
            assert (b, h, d) == ("batch", kv_heads, 16) and set(t.replace(" ", "").split("+")) == {"past_seq", "seq"}


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_runs_at_several_batch_and_seq(entry):
    sess = _session(HERE / entry["file"])
    rng = np.random.default_rng(0)
    for batch, seq, past in _combos(entry):
        feeds = _feeds(entry, batch, seq, past, rng)
        outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        logits = outs["logits"]
        assert np.isfinite(logits).all()
        if _family(entry) == "bert":
            assert logits.shape == (batch, 2)
        elif _family(entry) == "vit":
            assert logits.shape == (batch, 10)
        else:
            assert logits.shape == (batch, seq, VOCAB)
            kv_heads = feeds["past_key_0"].shape[1]
            for name, value in outs.items():
                if name.startswith("present_"):
                    assert value.shape == (batch, kv_heads, past + seq, 16), (name, value.shape)
                    # the cache is Concat(past, new) on the sequence axis: the past comes back unchanged
                    np.testing.assert_array_equal(value[:, :, :past], feeds[name.replace("present_", "past_")])


def _groups():
    groups = {}
    for e in ENTRIES:
        groups.setdefault(_family(e), []).append(e)
    return groups


@pytest.mark.parametrize("name", sorted(_groups()))
def test_exports_agree(name):
    """TorchScript, dynamo (and the fused BERT) compute the same function."""
    entries = _groups()[name]
    assert len(entries) >= 2
    rng = np.random.default_rng(1)
    for batch, seq, past in _combos(entries[0]):
        feeds = _feeds(entries[0], batch, seq, past, rng)
        ref = _session(HERE / entries[0]["file"]).run(None, feeds)
        for other in entries[1:]:
            got = _session(HERE / other["file"]).run(None, feeds)
            for a, b in zip(ref, got):
                np.testing.assert_allclose(b, a, rtol=0, atol=1e-4 * max(1.0, float(np.abs(a).max())),
                                           err_msg=f"{entries[0]['file']} vs {other['file']} at {(batch, seq, past)}")


def test_bert_fused_has_fused_ops():
    ops = BY_FILE["bert_fused.onnx"]["op_types"]
    for op in ("Attention", "EmbedLayerNormalization", "SkipLayerNormalization", "BiasGelu"):
        assert ops.get(f"com.microsoft::{op}", 0) >= 1, op
    assert "Softmax" not in ops and "LayerNormalization" not in ops
    model = onnx.load(str(HERE / "bert_fused.onnx"))
    for node in model.graph.node:
        if node.op_type == "Attention":
            assert {a.name: a.i for a in node.attribute}["num_heads"] == 4
            weight = next(t for t in model.graph.initializer if t.name == node.input[1])
            assert list(weight.dims) == [64, 3 * 64]  # q | k | v packed along the output axis


def test_bert_fused_treats_the_mask_as_lengths():
    """EmbedLayerNormalization turns the 0/1 mask into a per-row count: only right padding is exact.

    With a hole or left padding the fused graph attends to the first `count` tokens
    instead, so compare fused and unfused BERT only with right-padded masks.
    """
    rng = np.random.default_rng(2)
    ids = rng.integers(0, VOCAB, (2, 6), dtype=np.int64)
    right = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=np.int64)
    left = np.array([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], dtype=np.int64)
    plain, fused = _session(HERE / "bert.onnx"), _session(HERE / "bert_fused.onnx")
    for mask, exact in ((right, True), (left, False)):
        feeds = {"input_ids": ids, "attention_mask": mask}
        a, b = plain.run(None, feeds)[0], fused.run(None, feeds)[0]
        np.testing.assert_allclose(b[0], a[0], atol=1e-5)  # the unpadded row always agrees
        assert np.allclose(b[1], a[1], atol=1e-5) == exact
