"""PruningPlan: JSON round trip, hand edits honoured, errors for plans that do not fit,
and plan entries that name the original model's real weights."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from support import ALL_MODELS, feeds_for, run, zoo

from onnxprune.compiler.pipeline import analyze, prune
from onnxprune.compiler.plan import FORMAT, PruningPlan
from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import load_model, save_model

RESNET20 = zoo("resnet20.onnx")


def _weights(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}


def _node_input(proto: onnx.ModelProto, node_name: str, index: int) -> np.ndarray:
    """The constant a named node reads at `index` (whatever the initializer is now called)."""
    (node,) = [n for n in proto.graph.node if n.name == node_name]
    return _weights(proto)[node.input[index]]


@pytest.mark.parametrize("name", ["resnet20.onnx", "yolov8_c2f.onnx", "densenet.dynamo.onnx", "convnext.onnx"])
def test_json_round_trip_gives_same_bytes(name, tmp_path):
    path = zoo(name)
    direct = prune(path, ratio=0.5)
    plan_path = tmp_path / "plan.json"
    direct.plan.save(plan_path)
    text = plan_path.read_text()
    data = json.loads(text)
    assert data["format"] == FORMAT and data["channels"]
    loaded = PruningPlan.load(plan_path)
    assert loaded.to_dict() == direct.plan.to_dict()

    applied = prune(path, plan=loaded)
    save_model(direct.model, tmp_path / "direct.onnx")
    save_model(applied.model, tmp_path / "applied.onnx")
    assert (tmp_path / "direct.onnx").read_bytes() == (tmp_path / "applied.onnx").read_bytes()
    assert applied.plan.channels == direct.plan.channels
    assert applied.report["cost"] == direct.report["cost"]
    # the plan is honoured even when other settings would choose differently
    other = prune(path, plan=loaded, ratio=0.1, criterion="l2")
    save_model(other.model, tmp_path / "other.onnx")
    assert (tmp_path / "other.onnx").read_bytes() == (tmp_path / "direct.onnx").read_bytes()


def _single_source_conv(path: str):
    """(weight name, node name, next conv node name) of a conv whose output channels
    form a group of their own: a basic block's first conv."""
    an, _, _ = analyze(load_model(path))
    for g in an.groups:
        if len(g.sources) == 1 and len(g.prunable) == g.size and g.size >= 8:
            src = g.sources[0]
            if "conv1" in src["node"]:
                return src["tensor"], src["node"], src["node"].replace("conv1", "conv2"), g.size
    raise AssertionError("no single-source conv group found")


def test_hand_edited_plan_removes_exactly_that_row(tmp_path):
    weight, node, consumer, size = _single_source_conv(RESNET20)
    plan = {
        "format": FORMAT,
        "meta": {"note": "written by hand"},
        "channels": [{"tensor": weight, "axis": 0, "node": node, "removed": [5]}],
    }
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan))
    result = prune(RESNET20, plan=PruningPlan.load(plan_path))
    assert result.report["groups"]["channels_removed"] == 1
    out = tmp_path / "pruned.onnx"
    save_model(result.model, out)
    pruned = onnx.load(str(out))
    onnx.checker.check_model(pruned, full_check=True)
    original = onnx.load(RESNET20)

    w0, w1 = _node_input(original, node, 1), _node_input(pruned, node, 1)
    assert w1.shape == (size - 1, *w0.shape[1:])
    np.testing.assert_array_equal(w1, np.delete(w0, 5, axis=0))
    b0, b1 = _node_input(original, node, 2), _node_input(pruned, node, 2)
    np.testing.assert_array_equal(b1, np.delete(b0, 5))
    c0, c1 = _node_input(original, consumer, 1), _node_input(pruned, consumer, 1)
    np.testing.assert_array_equal(c1, np.delete(c0, 5, axis=1))
    # every other weight is untouched
    changed = {weight, _node_by_name(original, node).input[2], _node_by_name(original, consumer).input[1]}
    before, after = _weights(original), _weights(pruned)
    for name, array in before.items():
        if name not in changed and name in after:
            np.testing.assert_array_equal(after[name], array, err_msg=name)
    assert result.plan.channels[0]["removed"] == [5]
    assert result.plan.channels[0]["tensor"] == weight
    feeds = feeds_for(original, batch=2)
    assert run(out, feeds)["logits"].shape == (2, 10)


def _node_by_name(proto, name):
    (node,) = [n for n in proto.graph.node if n.name == name]
    return node


def _frozen_source():
    an, _, _ = analyze(load_model(RESNET20))
    for g in an.groups:
        if g.size and not g.prunable:
            return g.sources[0], g.reasons()
    raise AssertionError("no frozen group")


def _bad_plan(entry) -> PruningPlan:
    return PruningPlan.from_dict({"format": FORMAT, "channels": [entry]})


def _assert_one_line(err: pytest.ExceptionInfo, *words):
    text = str(err.value)
    assert text and "\n" not in text, text
    for w in words:
        assert w in text, (w, text)


def test_unknown_tensor_is_an_error():
    weight, node, _, _ = _single_source_conv(RESNET20)
    with pytest.raises(OnnxPruneError) as err:
        prune(RESNET20, plan=_bad_plan({"tensor": "no_such_weight", "axis": 0, "node": node, "removed": [0]}))
    _assert_one_line(err, "no_such_weight")
    with pytest.raises(OnnxPruneError) as err:  # right tensor, wrong axis
        prune(RESNET20, plan=_bad_plan({"tensor": weight, "axis": 1, "node": node, "removed": [0]}))
    _assert_one_line(err, weight)


def test_frozen_channel_is_an_error():
    src, reasons = _frozen_source()
    assert any("graph output" in r for r in reasons), reasons  # the classifier's logits
    entry = {"tensor": src["tensor"], "axis": src["axis"], "node": src["node"], "removed": [3]}
    with pytest.raises(OnnxPruneError) as err:
        prune(RESNET20, plan=_bad_plan(entry))
    _assert_one_line(err, src["tensor"], "frozen")


def test_index_out_of_range_is_an_error():
    weight, node, _, size = _single_source_conv(RESNET20)
    with pytest.raises(OnnxPruneError) as err:
        prune(RESNET20, plan=_bad_plan({"tensor": weight, "axis": 0, "node": node, "removed": [size]}))
    _assert_one_line(err, weight, str(size))


def test_plan_from_another_model_is_an_error():
    plan = prune(zoo("resnet56.onnx"), verify=False).plan
    with pytest.raises(OnnxPruneError) as err:
        prune(RESNET20, plan=plan)
    _assert_one_line(err, "plan")


def test_unreadable_plan_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(OnnxPruneError) as err:
        PruningPlan.load(bad)
    _assert_one_line(err, str(bad))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something/else", "channels": []}))
    with pytest.raises(OnnxPruneError) as err:
        PruningPlan.load(other)
    _assert_one_line(err, FORMAT)
    with pytest.raises(OnnxPruneError) as err:
        PruningPlan.load(tmp_path / "missing.json")
    _assert_one_line(err)


@pytest.mark.parametrize("path", ALL_MODELS)
def test_plan_names_real_weights_of_the_original(path):
    original = onnx.load(path)
    inits = {i.name: tuple(i.dims) for i in original.graph.initializer}
    node_names = {n.name for n in original.graph.node}
    result = prune(path, ratio=0.5, verify=False)
    assert result.plan.channels
    for entry in result.plan.channels:
        assert entry["tensor"] in inits, entry["tensor"]
        assert entry["node"] in node_names, entry["node"]
        dims = inits[entry["tensor"]]
        assert entry["size"] == dims[entry["axis"]], (entry, dims)
        assert entry["removed"] == sorted(set(entry["removed"]))
        assert all(0 <= i < entry["size"] for i in entry["removed"])
        assert len(entry["removed"]) < entry["size"]
    # the node reads the weight it is listed with
    by_node = {n.name: n for n in original.graph.node}
    for entry in result.plan.channels:
        assert entry["tensor"] in by_node[entry["node"]].input


EMPTY_GROUP_BUG = (
    "plan.PruningPlan.to_removed accepts a plan that removes every channel of a group; the "
    "rewrite emits Conv weights of shape (0,16,3,3) and verification then hangs in ONNX Runtime"
)


def test_plan_removing_a_whole_group_is_an_error():
    """Selection keeps >= 1 channel per group; a hand-written plan must not bypass that.
    verify=False because with verification on, the ORT run of the emitted model never
    returns (observed: > 10 minutes at 100 % CPU) -- so does `onnxprune prune --plan`."""
    weight, node, _, size = _single_source_conv(RESNET20)
    entry = {"tensor": weight, "axis": 0, "node": node, "removed": list(range(size))}
    with pytest.raises(OnnxPruneError) as err:
        prune(RESNET20, plan=_bad_plan(entry), verify=False)
    _assert_one_line(err, weight)
