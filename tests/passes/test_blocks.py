"""Residual blocks: detection (`find_blocks`) on the zoo, the transformers and small graphs
written in ONNX text, and physical removal (`RemoveBlocksPass`) checked against ONNX
Runtime: a model with a block removed must compute exactly what the original computes
with that block's branch multiplied by 0 (built here independently, by inserting a
``Mul(branch, 0)`` before the Add).
"""
from __future__ import annotations

import os
import time

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from support import MODELS, model_from_text, rel_err, zoo

from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import load_model
from onnxprune.passes.blocks import Block, block_macs, find_blocks
from onnxprune.passes.cost import model_cost
from onnxprune.passes.remove_blocks import RemoveBlocksPass
from onnxprune.passes.shapes import static_shapes
from onnxprune.runtime.session import ort_session, run_session
from onnxprune.tools.inspect_blocks import blocks_json, render_blocks

TRANSFORMERS = MODELS / "transformers"


def _transformer(name: str) -> str:
    path = TRANSFORMERS / name
    if not path.exists():
        pytest.skip(f"{name} not generated")
    return str(path)


def _path(name: str) -> str:
    return zoo(name) if (MODELS / "zoo" / name).exists() else _transformer(name)


def _feeds(model: ir.Model, batch: int = 2, seq: int = 5, past: int = 3) -> dict[str, np.ndarray]:
    """Inputs for any zoo or transformer model: floats N(0,1), token ids in [0, 10),
    attention masks of ones, KV caches of `past` steps."""
    rng = np.random.default_rng(0)
    feeds = {}
    for value in model.graph.inputs:
        if value.name in model.graph.initializers:
            continue
        if value.dtype == ir.DataType.INT64:
            shape = (batch, seq)
            feeds[value.name] = np.ones(shape, np.int64) if "mask" in value.name else rng.integers(0, 10, shape)
            continue
        dims = list(value.shape)
        if value.name.startswith("past_"):
            dims[2] = past
        shape = tuple(batch if i == 0 else int(d) for i, d in enumerate(dims))
        feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _run(model: ir.Model, feeds) -> dict[str, np.ndarray]:
    return run_session(ort_session(model), feeds)


def _gated(path: str, blocks: list[Block]) -> ir.Model:
    """The model at `path` with each block's branch output multiplied by 0 before its Add."""
    model = load_model(path)
    adds = {n.outputs[0].name: n for n in model.graph if n.op_type == "Add"}
    for k, block in enumerate(blocks):
        add = adds[block.exit]
        (index,) = [i for i, v in enumerate(add.inputs) if v.name != block.entry]
        zero = ir.Value(name=f"gate_zero_{k}", const_value=ir.tensor(np.array(0.0, np.float32)))
        zero.type, zero.shape = ir.TensorType(ir.DataType.FLOAT), ir.Shape([])
        model.graph.register_initializer(zero)
        mul = ir.Node("", "Mul", [add.inputs[index], zero], name=f"gate_{k}")
        model.graph.insert_before(add, mul)
        add.replace_input_with(index, mul.outputs[0])
    return model


def _removed(path: str, blocks) -> ir.Model:
    model = load_model(path)
    result = RemoveBlocksPass(blocks)(model)
    assert result.modified
    return result.model


def _check(model: ir.Model) -> None:
    onnx.checker.check_model(ir.serde.serialize_model(model), full_check=True)


def _summary(blocks: list[Block]) -> tuple:
    return (
        len(blocks),
        sum(b.kind == "identity" for b in blocks),
        sum(b.kind == "projection" for b in blocks),
        sum(b.removable for b in blocks),
    )


def _stage_sizes(blocks: list[Block]) -> list[int]:
    sizes: dict[int, int] = {}
    for b in blocks:
        sizes[b.stage] = sizes.get(b.stage, 0) + 1
    return [sizes[s] for s in sorted(sizes)]


# --------------------------------------------------------------------------- zoo counts

# file: (blocks, identity, projection, removable, blocks per stage)
ZOO_COUNTS = {
    "resnet20.onnx": (9, 7, 2, 7, [3, 3, 3]),
    "resnet20.dynamo.onnx": (9, 7, 2, 7, [3, 3, 3]),
    "resnet56.onnx": (27, 25, 2, 25, [9, 9, 9]),
    # 3 stages of 2 bottlenecks, each stage opened by a projection (the first without stride)
    "resnet_bottleneck.onnx": (6, 3, 3, 3, [2, 2, 2]),
    "resnet_bottleneck.dynamo.onnx": (6, 3, 3, 3, [2, 2, 2]),
    # ConvNeXt stages of (2, 2, 1) blocks, split by LN + 2x2/s2 downsampling convs
    "convnext.onnx": (5, 5, 0, 5, [2, 2, 1]),
    "convnext.dynamo.onnx": (5, 5, 0, 5, [2, 2, 1]),
    # inverted residuals: identity shortcut only at stride 1 and equal width
    "mobilenetv2.onnx": (5, 5, 0, 5, [1, 2, 1, 1]),
    "mobilenetv2.dynamo.onnx": (5, 5, 0, 5, [1, 2, 1, 1]),
    "vgg.onnx": (0, 0, 0, 0, []),
    "vgg.dynamo.onnx": (0, 0, 0, 0, []),
    # dense connectivity is Concat, not Add
    "densenet.onnx": (0, 0, 0, 0, []),
    "densenet.dynamo.onnx": (0, 0, 0, 0, []),
}


@pytest.mark.parametrize("name", ZOO_COUNTS)
def test_zoo_block_counts_and_stages(name):
    blocks = find_blocks(load_model(zoo(name)))
    *counts, stages = ZOO_COUNTS[name]
    assert _summary(blocks) == tuple(counts)
    assert _stage_sizes(blocks) == stages
    assert [b.id for b in blocks] == list(range(len(blocks)))
    for b in blocks:
        assert b.first_in_stage == (b.id == 0 or blocks[b.id - 1].stage != b.stage)
        assert b.branch and b.add and b.entry and b.exit
        if b.kind == "projection":
            assert not b.removable and "projection" in b.reason and b.shortcut
            assert b.first_in_stage  # a projection changes the width: it opens a stage
        else:
            assert b.removable == (b.reason == "")


def test_resnet56_stages_open_with_projections():
    blocks = find_blocks(load_model(zoo("resnet56.onnx")))
    firsts = [b for b in blocks if b.first_in_stage]
    assert [b.id for b in firsts] == [0, 9, 18]
    assert [b.kind for b in firsts] == ["identity", "projection", "projection"]
    assert all(b.kind == "identity" for b in blocks if not b.first_in_stage)
    # the entry of every block is the previous block's output after its ReLU
    assert all(len(b.branch) == 3 for b in blocks)  # conv-relu-conv (BN folded)


def test_resnet56_identity_block_costs_the_papers_figure():
    model = load_model(zoo("resnet56.onnx"))
    shapes = static_shapes(model, {"input": (1, 3, 32, 32)})
    blocks = find_blocks(model, shapes)
    macs = block_macs(model, blocks, shapes)
    total = model_cost(model, shapes).total_macs
    assert round(total / 1e6, 2) == 125.75
    identity = [macs[b.id] for b in blocks if b.kind == "identity"]
    assert len(identity) == 25 and set(identity) == {4_718_592}  # 4.7186 M each
    assert round(100 * identity[0] / total, 4) == 3.7524
    # the eligible set (not the first block, not projections, 2 kept per stage) is 21 blocks
    assert round(100 * 21 * identity[0] / total, 2) == 78.80


def test_resnet20_torchscript_and_dynamo_agree():
    a = find_blocks(load_model(zoo("resnet20.onnx")))
    b = find_blocks(load_model(zoo("resnet20.dynamo.onnx")))
    assert [(x.kind, x.stage, x.first_in_stage, x.removable, len(x.branch)) for x in a] == [
        (x.kind, x.stage, x.first_in_stage, x.removable, len(x.branch)) for x in b
    ]


# --------------------------------------------------------------------------- transformers


def _op_types(model: ir.Model, block: Block) -> set[str]:
    nodes = {n.name: n for n in model.graph}
    return {nodes[n].op_type for n in block.branch}


@pytest.mark.parametrize("name", ["bert.onnx", "bert.dynamo.onnx", "vit.onnx", "vit.dynamo.onnx"])
def test_encoder_attention_and_mlp_sublayers_are_removable(name):
    model = load_model(_transformer(name))
    blocks = find_blocks(model)
    assert _summary(blocks) == (4, 4, 0, 4)
    assert _stage_sizes(blocks) == [4]
    kinds = ["attention" if "Softmax" in _op_types(model, b) else "mlp" for b in blocks]
    assert kinds == ["attention", "mlp", "attention", "mlp"]
    for b in blocks:
        assert sum(op == "MatMul" for op in _op_types(model, b)) >= 1


def test_post_ln_bert_blocks_enter_at_the_layer_norm():
    model = load_model(_transformer("bert.onnx"))
    blocks = find_blocks(model)
    producers = {v.name: v.producer() for n in model.graph for v in n.outputs}
    assert all(producers[b.entry].op_type == "LayerNormalization" for b in blocks)
    # the padding mask is read by every attention branch but computed outside them
    mask_nodes = {n.name for n in model.graph if any(v.name == "attention_mask" for v in n.inputs)}
    assert mask_nodes and not any(mask_nodes & set(b.branch) for b in blocks)


@pytest.mark.parametrize("name", ["gpt2.onnx", "gpt2.dynamo.onnx", "llama.onnx", "llama.dynamo.onnx"])
def test_kv_cache_attention_is_reported_not_removable(name):
    model = load_model(_transformer(name))
    blocks = find_blocks(model)
    assert _summary(blocks) == (4, 4, 0, 2)
    for layer, (attention, mlp) in enumerate(zip(blocks[0::2], blocks[1::2])):
        assert "Softmax" in _op_types(model, attention)
        assert not attention.removable
        assert f"'present_key_{layer}'" in attention.reason and "graph output" in attention.reason
        assert mlp.removable and "Softmax" not in _op_types(model, mlp)
    with pytest.raises(OnnxPruneError, match="present_key_0") as err:
        RemoveBlocksPass([blocks[0].id])(model)
    assert "\n" not in str(err.value)


def test_fused_bert_hides_its_residuals_in_skip_layer_norm():
    # Documented limit: the residual Add lives inside com.microsoft::SkipLayerNormalization.
    assert find_blocks(load_model(_transformer("bert_fused.onnx"))) == []


# --------------------------------------------------------------------------- removal exactness


def _exact_cases():
    cases = [("resnet20.onnx", [i]) for i in (0, 1, 2, 4, 5, 7, 8)]
    cases += [("resnet56.onnx", [i]) for i in (0, 8, 10, 26)]
    cases += [("resnet20.dynamo.onnx", [1])]
    cases += [("convnext.onnx", [i]) for i in range(5)] + [("convnext.dynamo.onnx", [4])]
    cases += [("mobilenetv2.onnx", [i]) for i in range(5)] + [("mobilenetv2.dynamo.onnx", [2])]
    cases += [("bert.onnx", [i]) for i in range(4)] + [("bert.dynamo.onnx", [i]) for i in range(4)]
    cases += [("gpt2.onnx", [1, 3]), ("llama.dynamo.onnx", [3]), ("vit.dynamo.onnx", [0, 1])]
    # several at once, including chained neighbours (a block whose entry is the exit of
    # another removed block) and a whole stage down to nothing
    cases += [
        ("resnet56.onnx", [1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 20, 26]),
        ("resnet20.onnx", [0, 1, 2, 4, 5, 7, 8]),
        ("convnext.onnx", [0, 1, 2, 3, 4]),
        ("mobilenetv2.onnx", [1, 2]),
        ("bert.onnx", [0, 1, 2, 3]),
        ("bert.dynamo.onnx", [0, 3]),
    ]
    return [pytest.param(name, ids, id=f"{name}-{'+'.join(map(str, ids))}") for name, ids in cases]


@pytest.mark.parametrize("name, ids", _exact_cases())
def test_removal_equals_zeroed_branch(name, ids):
    path = _path(name)
    blocks = find_blocks(load_model(path))
    chosen = [blocks[i] for i in ids]
    assert all(b.removable for b in chosen)
    removed = _removed(path, ids)
    _check(removed)
    nodes_before = len(load_model(path).graph)
    assert len(removed.graph) <= nodes_before - sum(len(b.branch) + 1 for b in chosen)
    reference = _gated(path, chosen)
    feeds = _feeds(removed)
    got, want = _run(removed, feeds), _run(reference, feeds)
    assert list(got) == list(want)  # same outputs, same order
    for out in want:
        assert got[out].shape == want[out].shape
        assert rel_err(want[out], got[out]) <= 1e-5, out
    # the interface is untouched
    original = load_model(path)
    assert [(v.name, v.dtype) for v in removed.graph.inputs] == [(v.name, v.dtype) for v in original.graph.inputs]
    assert [(v.name, v.dtype) for v in removed.graph.outputs] == [(v.name, v.dtype) for v in original.graph.outputs]
    # nothing the removed branches used is left behind
    removed_names = {n for b in chosen for n in b.branch}
    assert not removed_names & {n.name for n in removed.graph}
    used = {v.name for n in removed.graph for v in n.inputs if v is not None} | {v.name for v in removed.graph.outputs}
    assert set(removed.graph.initializers) <= used


@pytest.mark.parametrize("name, removed_id, gated_id", [("resnet20.onnx", 0, 1), ("bert.onnx", 1, 3)])
def test_negative_control_another_block_does_not_match(name, removed_id, gated_id):
    path = _path(name)
    blocks = find_blocks(load_model(path))
    removed = _removed(path, [removed_id])
    reference = _gated(path, [blocks[gated_id]])
    feeds = _feeds(removed)
    got, want = _run(removed, feeds), _run(reference, feeds)
    assert max(rel_err(want[o], got[o]) for o in want) > 1e-3


def test_blocks_found_on_one_copy_remove_from_another():
    path = zoo("resnet20.onnx")
    blocks = find_blocks(load_model(path))
    by_block = _removed(path, [blocks[4], blocks[1]])
    by_id = _removed(path, [1, 4])
    feeds = _feeds(by_id)
    a, b = _run(by_block, feeds), _run(by_id, feeds)
    assert rel_err(a["logits"], b["logits"]) == 0.0


# --------------------------------------------------------------------------- refusals


def test_refuses_projection_unknown_and_foreign_blocks():
    model = load_model(zoo("resnet20.onnx"))
    blocks = find_blocks(model)
    projection = next(b for b in blocks if b.kind == "projection")
    before = len(model.graph)
    cases = [
        ([projection.id], "not removable: projection shortcut"),
        ([0, projection.id], "not removable"),  # all-or-nothing: block 0 is left alone too
        ([99], "no block with id 99: this model has ids 0..8"),
        ([dataclass_replace(blocks[0], add="nope")], "is not a block of this model"),
        (["0"], "ids or Blocks"),
    ]
    for chosen, message in cases:
        with pytest.raises(OnnxPruneError, match=message) as err:
            RemoveBlocksPass(chosen)(model)
        assert "\n" not in str(err.value)
    assert len(model.graph) == before


def dataclass_replace(block: Block, **changes) -> Block:
    import dataclasses

    return dataclasses.replace(block, **changes)


def test_vgg_has_nothing_to_remove():
    with pytest.raises(OnnxPruneError, match="this model has no blocks"):
        RemoveBlocksPass([0])(load_model(zoo("vgg.onnx")))


# --------------------------------------------------------------------------- small graphs

CONV = "Conv<pads = [1, 1, 1, 1]>"
W = {"w1": (4, 4, 3, 3), "w2": (4, 4, 3, 3)}
X = "float[1,4,6,6] x"
Y = "float[1,4,6,6] y"


def _out(*names: str) -> str:
    return ", ".join(f"float[1,4,6,6] {n}" for n in names)


def _text_model(body: str, outputs: str = Y, inputs: str = X, weights=None) -> ir.Model:
    return load_model(model_from_text(body, inputs, outputs, weights or W))


def _one(model: ir.Model) -> Block:
    (block,) = find_blocks(model)
    return block


@pytest.mark.parametrize("add", ["Add(x, h2)", "Add(h2, x)"])
def test_either_add_input_order(add):
    model = _text_model(f"h1 = {CONV}(x, w1)\n r1 = Relu(h1)\n h2 = {CONV}(r1, w2)\n y = {add}")
    block = _one(model)
    assert (block.kind, block.removable, block.entry, block.exit) == ("identity", True, "x", "y")
    assert len(block.branch) == 3


def test_bias_adds_and_weightless_adds_are_not_blocks():
    body = f"""
      h1 = {CONV}(x, w1)
      y1 = Add(h1, b)
      c = Mul(x, x)
      c3 = Mul(c, x)
      k = Mul(c3, k0)
      y = Add(x, k)
    """  # y: x + 0.04·x³, the inside of a tanh-GELU
    model = _text_model(body, _out("y", "y1"), weights={**W, "b": (4, 1, 1), "k0": np.array(0.04, np.float32)})
    assert find_blocks(model) == []


def test_projection_shortcut():
    body = f"h1 = {CONV}(x, w1)\n r1 = Relu(h1)\n h2 = {CONV}(r1, w2)\n s = Conv(x, ws)\n y = Add(s, h2)"
    block = _one(_text_model(body, weights={**W, "ws": (4, 4, 1, 1)}))
    assert (block.kind, block.removable, block.entry) == ("projection", False, "x")
    assert "projection shortcut (Conv)" in block.reason


def test_branch_value_that_is_a_graph_output_escapes():
    body = f"h1 = {CONV}(x, w1)\n r1 = Relu(h1)\n h2 = {CONV}(r1, w2)\n y = Add(x, h2)"
    block = _one(_text_model(body, _out("y", "h1")))
    assert block.kind == "identity" and not block.removable
    assert block.reason == "branch value 'h1' escapes the block: it is a graph output"


def test_branch_value_read_outside_escapes():
    body = f"h1 = {CONV}(x, w1)\n r1 = Relu(h1)\n h2 = {CONV}(r1, w2)\n y = Add(x, h2)\n z = Sigmoid(r1)"
    block = _one(_text_model(body, _out("y", "z")))
    assert not block.removable
    # The unnamed Sigmoid is named at load (node identity): the reason names it.
    assert block.reason == "branch value 'r1' escapes the block: it is also read by node 'Sigmoid_4' outside it"


def test_branch_reading_a_value_computed_from_x_elsewhere_is_not_single_entry():
    # s = mean(x) is computed from the entry outside the branch and also feeds another output.
    body = f"""
      h1 = {CONV}(x, w1)
      h2 = {CONV}(h1, w2)
      s = ReduceMean<axes = [2, 3]>(x)
      h3 = Mul(h2, s)
      y = Add(x, h3)
      z = Sigmoid(s)
    """
    block = _one(_text_model(body, f"{Y}, float[1,4,1,1] z"))
    assert not block.removable and "'s' escapes the block" in block.reason


def test_side_inputs_available_before_the_entry_are_allowed():
    # Like an attention mask: computed once from another input, read by two branches, and
    # (here) scheduled after the first block's entry.
    body = f"""
      h1 = {CONV}(x, w1)
      ms = Sigmoid(m)
      h2 = {CONV}(h1, w2)
      h3 = Mul(h2, ms)
      y1 = Add(x, h3)
      g1 = {CONV}(y1, w3)
      g2 = Mul(g1, ms)
      y = Add(g2, y1)
    """
    path_model = model_from_text(body, f"{X}, float[1,4,1,1] m", Y, {**W, "w3": (4, 4, 3, 3)})
    blocks = find_blocks(load_model(path_model))
    assert _summary(blocks) == (2, 2, 0, 2) and _stage_sizes(blocks) == [2]
    assert all("Sigmoid" not in " ".join(b.branch) for b in blocks)
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 4, 6, 6)).astype(np.float32),
             "m": np.random.default_rng(2).standard_normal((1, 4, 1, 1)).astype(np.float32)}
    for ids, sigmoid_left in (([0], True), ([0, 1], False)):
        model = load_model(path_model)
        RemoveBlocksPass(ids)(model)
        _check(model)
        assert any(n.op_type == "Sigmoid" for n in model.graph) == sigmoid_left
        assert [v.name for v in model.graph.inputs] == ["x", "m"]
        gated = load_model(path_model)
        gated_blocks = find_blocks(gated)
        reference = _gated_model(gated, [gated_blocks[i] for i in ids])
        assert rel_err(_run(reference, feeds)["y"], _run(model, feeds)["y"]) <= 1e-6


def _gated_model(model: ir.Model, blocks: list[Block]) -> ir.Model:
    proto = ir.serde.serialize_model(model)
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"onnxprune-blocks-{os.getpid()}.onnx")
    onnx.save(proto, path)
    try:
        return _gated(path, blocks)
    finally:
        os.remove(path)


def test_removing_a_block_whose_add_is_a_graph_output_keeps_the_name():
    # Two chained blocks; the first one's output is also a model output.
    body = f"""
      h1 = {CONV}(x, w1)
      h2 = {CONV}(h1, w2)
      y1 = Add(x, h2)
      g1 = {CONV}(y1, w3)
      y = Add(y1, g1)
    """
    proto = model_from_text(body, X, _out("y", "y1"), {**W, "w3": (4, 4, 3, 3)})
    feeds = {"x": np.random.default_rng(3).standard_normal((1, 4, 6, 6)).astype(np.float32)}
    for ids in ([0], [1], [0, 1]):
        model = load_model(proto)
        blocks = find_blocks(model)
        RemoveBlocksPass(ids)(model)
        _check(model)
        assert [v.name for v in model.graph.outputs] == ["y", "y1"]
        reference = _gated_model(load_model(proto), [blocks[i] for i in ids])
        got, want = _run(model, feeds), _run(reference, feeds)
        for out in ("y", "y1"):
            assert rel_err(want[out], got[out]) <= 1e-6
    assert np.array_equal(got["y"], feeds["x"]) and np.array_equal(got["y1"], feeds["x"])


def test_nested_blocks_remove_alone_or_together():
    body = f"""
      h = {CONV}(x, w1)
      g = {CONV}(h, w2)
      i = Add(h, g)
      k = {CONV}(i, w3)
      y = Add(k, x)
    """
    proto = model_from_text(body, X, Y, {**W, "w3": (4, 4, 3, 3)})
    inner, outer = find_blocks(load_model(proto))
    assert (inner.entry, inner.exit, len(inner.branch)) == ("h", "i", 1)
    assert (outer.entry, outer.exit, len(outer.branch)) == ("x", "y", 4)  # holds the inner block
    feeds = {"x": np.random.default_rng(5).standard_normal((1, 4, 6, 6)).astype(np.float32)}
    for ids, ops in (([0], ["Conv", "Conv", "Add"]), ([1], ["Identity"]), ([0, 1], ["Identity"])):
        model = load_model(proto)
        RemoveBlocksPass(ids)(model)
        _check(model)
        assert [n.op_type for n in model.graph] == ops
        reference = _gated_model(load_model(proto), [(inner, outer)[i] for i in ids])
        assert rel_err(_run(reference, feeds)["y"], _run(model, feeds)["y"]) <= 1e-6


# --------------------------------------------------------------------------- scale


def _chain(blocks: int, width: int = 2) -> onnx.ModelProto:
    """x → blocks × (Conv1x1 → Relu → Conv1x1 → Add(x, ·) → Relu) → y, built with onnx.helper."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = "x"
    for i in range(blocks):
        for k in (1, 2):
            inits.append(numpy_helper.from_array(
                (0.1 * rng.standard_normal((width, width, 1, 1))).astype(np.float32), f"w{i}_{k}"))
        nodes += [
            helper.make_node("Conv", [x, f"w{i}_1"], [f"c{i}_1"], name=f"conv{i}_1"),
            helper.make_node("Relu", [f"c{i}_1"], [f"r{i}_1"], name=f"relu{i}_1"),
            helper.make_node("Conv", [f"r{i}_1", f"w{i}_2"], [f"c{i}_2"], name=f"conv{i}_2"),
            helper.make_node("Add", [x, f"c{i}_2"], [f"a{i}"], name=f"add{i}"),
            helper.make_node("Relu", [f"a{i}"], [f"o{i}"], name=f"relu{i}_2"),
        ]
        x = f"o{i}"
    nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    graph = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width, 2, 2])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_chain_of_1500_blocks_is_found_in_linear_time():
    model = load_model(_chain(1500))
    start = time.perf_counter()
    blocks = find_blocks(model)
    elapsed = time.perf_counter() - start
    assert _summary(blocks) == (1500, 1500, 0, 1500) and _stage_sizes(blocks) == [1500]
    assert blocks[-1].branch == ("conv1499_1", "relu1499_1", "conv1499_2")
    # 7.5k nodes: ~0.1 s measured (15 us/node, flat from 1k to 50k nodes); a quadratic
    # search would take minutes here.
    assert elapsed < 5.0


def test_removal_on_a_long_chain():
    proto = _chain(300)
    model = load_model(proto)
    RemoveBlocksPass(range(0, 300, 2))(model)
    _check(model)
    assert len(find_blocks(model)) == 150 and len(model.graph) == 300 * 5 + 1 - 150 * 4
    feeds = {"x": np.random.default_rng(4).standard_normal((1, 2, 2, 2)).astype(np.float32)}
    reference = load_model(proto)
    reference = _gated_model(reference, [b for b in find_blocks(reference) if b.id % 2 == 0])
    assert rel_err(_run(reference, feeds)["y"], _run(model, feeds)["y"]) <= 1e-5


# --------------------------------------------------------------------------- inspection


def test_render_and_json():
    model = load_model(zoo("resnet20.onnx"))
    shapes = static_shapes(model, {"input": (1, 3, 32, 32)})
    blocks = find_blocks(model, shapes)
    macs = block_macs(model, blocks, shapes)
    total = model_cost(model, shapes).total_macs
    rows = blocks_json(blocks, macs, total)
    assert [r["id"] for r in rows] == list(range(9))
    assert rows[0]["branch_nodes"] == 3 and rows[0]["macs"] == 2 * 32 * 32 * 16 * 16 * 9
    assert rows[0]["macs_percent"] == pytest.approx(100 * rows[0]["macs"] / total)
    assert rows[3]["kind"] == "projection" and rows[3]["reason"]
    text = render_blocks(blocks, macs, total)
    lines = text.splitlines()
    assert lines[0] == "residual blocks: 9 (7 removable, 2 not)"
    assert len(lines) == 2 + 9 + 1
    assert "4.72 M" in lines[2] and "11.56" in lines[2] and "0*" in lines[2]
    assert "no: projection shortcut" in lines[2 + 3]
    assert blocks_json(blocks, macs)[0]["macs_percent"] is None  # no total given
    assert render_blocks([], {}) == "residual blocks: 0 (0 removable, 0 not)"
