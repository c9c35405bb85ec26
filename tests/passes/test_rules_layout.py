"""Rules for ops that move, cut, join or reinterpret axes (and the pooling, reduction
and softmax rules they are usually seen with), plus the conservative defaults: ops
without a rule, graph outputs, and shapes read at runtime."""
from __future__ import annotations

import numpy as np
import pytest
from test_rules_common import (
    analysis, assert_frozen, attr, build, const_input, group_of, inexact_reasons, producer,
    prune_and_check,
)

from onnxprune.compiler.model_io import load_model
from onnxprune.passes.shape_tensors import entries_of_input

# -- Concat ----------------------------------------------------------------------------

DENSE = """
g (float[1,3,6,6] x) => (float[1,4,6,6] y) {
  a = Conv<pads = [1, 1, 1, 1]>(x, w1, b1)
  ra = Relu(a)
  b = Conv<pads = [1, 1, 1, 1]>(ra, w2, b2)
  c = Concat<axis = 1>(a, b)
  rc = Relu(c)
  d = Conv<pads = [1, 1, 1, 1]>(rc, w3, b3)
  e = Concat<axis = -3>(c, d)
  y = Conv(e, w4)
}
"""
DENSE_W = {
    "w1": (8, 3, 3, 3), "b1": (8,), "w2": (4, 8, 3, 3), "b2": (4,),
    "w3": (6, 12, 3, 3), "b3": (6,), "w4": (4, 18, 1, 1),
}


def test_concat_densenet_groups_stay_separate():
    proto = build(DENSE, DENSE_W)
    an = analysis(proto)
    g1, g2, g3 = group_of(an, "w1"), group_of(an, "w2"), group_of(an, "w3")
    assert len({id(g1), id(g2), id(g3)}) == 3
    assert (g1.size, g2.size, g3.size) == (8, 4, 6)
    assert all(g.prunable == g.classes and g.exact for g in (g1, g2, g3))


def test_concat_densenet_offsets():
    """Remove chosen channels of each part: every consumer loses exactly those rows at
    the right offsets (the numbers match zeroing them in the original)."""
    proto = build(DENSE, DENSE_W)
    remove = {"w1": [0, 5, 6], "w2": [1], "w3": [2, 3, 5]}
    result, _, _ = prune_and_check(proto, remove=remove)
    m = result.model
    kept_c = [i for i in range(8) if i not in (0, 5, 6)] + [8 + i for i in range(4) if i != 1]
    w3 = DENSE_W["w3"]
    assert const_input(producer(m, "d"), 1).shape == (3, 8, 3, 3)
    assert const_input(producer(m, "y"), 1).shape == (4, 8 + 3, 1, 1)
    w3_full = const_input(producer(load_model(proto), "d"), 1)
    assert w3_full.shape == w3
    np.testing.assert_array_equal(const_input(producer(m, "d"), 1), w3_full[[0, 1, 4]][:, kept_c])


def test_concat_with_graph_input_keeps_that_part():
    proto = build(
        """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          c = Concat<axis = 1>(x, a)
          y = Conv(c, w2)
        }
        """,
        {"w1": (8, 3, 3, 3), "w2": (4, 11, 1, 1)},
    )
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes
    result, _, _ = prune_and_check(proto)
    assert const_input(producer(result.model, "y"), 1).shape == (4, 3 + 4, 1, 1)


# -- Split -----------------------------------------------------------------------------

SPLIT = """
g (float[1,3,6,6] x) => (float[1,4,6,6] y) {{
  a = Conv<pads = [1, 1, 1, 1]>(x, w1, b1)
  {split}
  p = Conv(s1, wp)
  q = Conv(s2, wq)
  y = Add(p, q)
}}
"""


@pytest.mark.parametrize(
    "split,opset,sizes",
    [
        pytest.param("s1, s2 = Split<axis = 1>(a, sizes)", 13, [4, 8], id="sizes-input"),
        pytest.param("s1, s2 = Split<axis = 1, split = [4, 8]>(a)", 11, [4, 8], id="split-attr"),
        pytest.param("s1, s2 = Split<axis = 1>(a)", 13, [6, 6], id="equal-13"),
        pytest.param("s1, s2 = Split<axis = 1, num_outputs = 2>(a)", 18, [6, 6], id="num_outputs-18"),
        pytest.param("s1, s2 = Split<axis = -3>(a)", 11, [6, 6], id="equal-11"),
    ],
)
def test_split_sizes_rewritten(split, opset, sizes):
    weights = {"w1": (12, 3, 3, 3), "b1": (12,), "wp": (4, sizes[0], 1, 1), "wq": (4, sizes[1], 1, 1)}
    if "sizes)" in split:
        weights["sizes"] = np.array(sizes, dtype=np.int64)
    proto = build(SPLIT.format(split=split), weights, opset=opset)
    g = group_of(analysis(proto), "w1")
    assert g.size == 12 and g.prunable == g.classes and g.exact
    # Unequal removal: 1 from the first piece, 4 from the second.
    first = list(range(sizes[0]))
    remove = first[:1] + [sizes[0] + k for k in (0, 2, 3, 5)]
    result, _, _ = prune_and_check(proto, remove={"w1": remove})
    node = producer(result.model, "s1")
    new = [sizes[0] - 1, sizes[1] - 4]
    if attr(node, "split") is not None:
        assert list(attr(node, "split")) == new
    else:
        assert const_input(node, 1).tolist() == new
    assert attr(node, "num_outputs") is None
    assert const_input(producer(result.model, "p"), 1).shape == (4, new[0], 1, 1)
    assert const_input(producer(result.model, "q"), 1).shape == (4, new[1], 1, 1)


def test_split_equal_removal_keeps_it_equal():
    proto = build(
        SPLIT.format(split="s1, s2 = Split<axis = 1, num_outputs = 2>(a)"),
        {"w1": (12, 3, 3, 3), "b1": (12,), "wp": (4, 6, 1, 1), "wq": (4, 6, 1, 1)},
        opset=18,
    )
    result, _, _ = prune_and_check(proto, remove={"w1": [0, 1, 6, 7]})
    node = producer(result.model, "s1")
    assert len(node.inputs) == 1 or node.inputs[1] is None or const_input(node, 1).tolist() == [4, 4]


# -- Slice -----------------------------------------------------------------------------

SLICE = """
g (float[1,3,6,6] x) => (float[1,4,6,6] y) {{
  a = Conv<pads = [1, 1, 1, 1]>(x, w1, b1)
  s = Slice(a, starts, ends, axes{steps})
  y = Conv(s, w2)
}}
"""


@pytest.mark.parametrize(
    "start,end,width",
    [(2, 10, 8), (0, 6, 6), (4, 2**62, 8), (-9, -1, 8), (3, 12, 9)],
    ids=["2:10", "0:6", "4:end", "-9:-1", "3:12"],
)
def test_slice_channel_bounds_rewritten(start, end, width):
    weights = {
        "w1": (12, 3, 3, 3), "b1": (12,), "w2": (4, width, 1, 1),
        "starts": np.array([start], np.int64), "ends": np.array([end], np.int64),
        "axes": np.array([1], np.int64),
    }
    proto = build(SLICE.format(steps=""), weights)
    g = group_of(analysis(proto), "w1")
    assert g.size == 12 and g.prunable == g.classes and g.exact
    remove = [0, 3, 4, 9, 10]
    result, _, _ = prune_and_check(proto, remove={"w1": remove})
    keep = np.ones(12, bool)
    keep[remove] = False
    lo, hi, _ = slice(start, end).indices(12)
    node = producer(result.model, "s")
    new_start, new_end = int(const_input(node, 1)[0]), int(const_input(node, 2)[0])
    assert new_start == keep[:lo].sum()
    kept_after = np.flatnonzero(keep)
    assert kept_after[new_start:new_end].tolist() == [i for i in range(lo, hi) if keep[i]]


def test_slices_sharing_bound_constants():
    """torch.chunk exports Slices that share constants (the end of one is the start of
    the next): rewriting one must not change the other."""
    proto = build(
        """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1, b1)
          s1 = Slice(a, zero, six, one)
          s2 = Slice(a, six, twelve, one)
          p = Conv(s1, wp)
          q = Conv(s2, wq)
          y = Add(p, q)
        }
        """,
        {
            "w1": (12, 3, 3, 3), "b1": (12,), "wp": (4, 6, 1, 1), "wq": (4, 6, 1, 1),
            "zero": np.array([0], np.int64), "six": np.array([6], np.int64),
            "twelve": np.array([12], np.int64), "one": np.array([1], np.int64),
        },
    )
    result, _, _ = prune_and_check(proto, remove={"w1": [0, 1, 2, 7]})
    s1, s2 = producer(result.model, "s1"), producer(result.model, "s2")
    assert (const_input(s1, 1)[0], const_input(s1, 2)[0]) == (0, 3)
    assert (const_input(s2, 1)[0], const_input(s2, 2)[0]) == (3, 8)


def test_slice_with_step_freezes():
    weights = {
        "w1": (12, 3, 3, 3), "b1": (12,), "w2": (4, 6, 1, 1),
        "starts": np.array([0], np.int64), "ends": np.array([12], np.int64),
        "axes": np.array([1], np.int64), "steps": np.array([2], np.int64),
    }
    proto = build(SLICE.format(steps=", steps"), weights)
    assert_frozen(group_of(analysis(proto), "w1"), "Slice", "slices with step 2")


def test_slice_on_spatial_axis_passes_channels():
    weights = {
        "w1": (8, 3, 3, 3), "b1": (8,), "w2": (4, 8, 1, 1),
        "starts": np.array([1, 1], np.int64), "ends": np.array([5, 5], np.int64),
        "axes": np.array([2, 3], np.int64),
    }
    proto = build(SLICE.format(steps="").replace("float[1,4,6,6] y", "float[1,4,4,4] y"), weights)
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes
    result, _, _ = prune_and_check(proto)
    assert const_input(producer(result.model, "s"), 1).tolist() == [1, 1]


def test_slice_with_runtime_bounds_freezes():
    proto = build(
        """
        g (float[1,3,6,6] x, int64[1] e) => (float[1,8,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          s = Slice(a, starts, e, axes)
          y = Relu(s)
        }
        """,
        {"w1": (8, 3, 3, 3), "starts": np.array([0], np.int64), "axes": np.array([2], np.int64)},
    )
    assert_frozen(group_of(analysis(proto), "w1"), "Slice", "slice bounds computed at runtime")


# -- Flatten and Reshape ---------------------------------------------------------------

HEAD = """
g (float[N,3,4,4] x) => (float[N,5] y) {{
  a = Conv<strides = [2, 2]>(x, w1, b1)
  r = Relu(a)
  {flat}
  y = Gemm<transB = {tb}>(f, w2, b2)
}}
"""
SHAPES = {"x": (2, 3, 4, 4)}


@pytest.mark.parametrize("tb", [0, 1])
@pytest.mark.parametrize(
    "flat",
    [
        pytest.param("f = Flatten(r)", id="Flatten"),
        pytest.param("f = Flatten<axis = -3>(r)", id="Flatten-neg-axis"),
        pytest.param("t = Constant<value = int64[2] {0, -1}>()\n  f = Reshape(r, t)", id="Reshape-0,-1"),
        pytest.param("t = Constant<value = int64[2] {-1, 32}>()\n  f = Reshape(r, t)", id="Reshape--1,32"),
        pytest.param(
            "s = Shape(r)\n  i0 = Constant<value = int64 {0}>()\n  n = Gather(s, i0)\n"
            "  ax = Constant<value = int64[1] {0}>()\n  nu = Unsqueeze(n, ax)\n"
            "  rest = Constant<value = int64[1] {-1}>()\n  t = Concat<axis = 0>(nu, rest)\n  f = Reshape(r, t)",
            id="Reshape-Shape-Gather,-1",
        ),
        pytest.param(
            "s = Shape(r)\n  i0 = Constant<value = int64 {0}>()\n  n = Gather(s, i0)\n"
            "  ax = Constant<value = int64[1] {0}>()\n  nu = Unsqueeze(n, ax)\n"
            "  rest = Constant<value = int64[1] {32}>()\n  t = Concat<axis = 0>(nu, rest)\n  f = Reshape(r, t)",
            id="Reshape-Shape-Gather,32",
        ),
        pytest.param(
            "s = Shape<end = 1>(r)\n  rest = Constant<value = int64[1] {32}>()\n"
            "  t = Concat<axis = 0>(s, rest)\n  f = Reshape(r, t)",
            id="Reshape-Shape-end1,32",
        ),
    ],
)
def test_flatten_to_gemm_one_channel_is_hw_features(flat, tb):
    """Conv -> [N,8,2,2] -> [N,32] -> Gemm: channel c is features 4c..4c+3."""
    w2 = (5, 32) if tb else (32, 5)
    proto = build(HEAD.format(flat=flat, tb=tb), {"w1": (8, 3, 2, 2), "b1": (8,), "w2": w2, "b2": (5,)})
    g = group_of(analysis(proto, SHAPES), "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    remove = [1, 2, 6]
    result, _, _ = prune_and_check(proto, input_shapes=SHAPES, remove={"w1": remove})
    features = [4 * c + k for c in range(8) if c not in remove for k in range(4)]
    got = const_input(producer(result.model, "y"), 1)
    original = const_input(producer(load_model(proto), "y"), 1)
    np.testing.assert_array_equal(got, original[:, features] if tb else original[features])
    if "{32}" in flat or "-1, 32" in flat:
        # The literal feature count in the target follows the pruning.
        entries = entries_of_input(producer(result.model, "f"), 1)
        assert entries[-1].value == 20


def test_reshape_channel_into_heads():
    """hidden -> [heads, head_dim] (attention): whole heads are the units."""
    proto = build(
        """
        g (float[2,5,16] x) => (float[2,5,16] y) {
          h = MatMul(x, wv)
          t = Constant<value = int64[4] {2, 5, 4, 3}>()
          r = Reshape(h, t)
          u = Relu(r)
          t2 = Constant<value = int64[3] {2, 5, 12}>()
          back = Reshape(u, t2)
          y = MatMul(back, wo)
        }
        """,
        {"wv": (16, 12), "wo": (12, 16)},
    )
    g = group_of(analysis(proto), "wv")
    assert g.size == 4 and g.prunable == g.classes and g.exact
    result, _, _ = prune_and_check(proto)
    m = result.model
    assert const_input(producer(m, "r"), 1).tolist() == [2, 5, 2, 3]
    assert const_input(producer(m, "back"), 1).tolist() == [2, 5, 6]
    assert const_input(producer(m, "h"), 1).shape == (16, 6)


def test_reshape_mixing_two_prunable_axes_freezes():
    proto = build(
        """
        g (float[1,3,4,4] x) => (float[1,16,4] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          t = Transpose<perm = [0, 2, 3, 1]>(a)
          m = MatMul(t, w2)
          s = Constant<value = int64[3] {1, 16, 4}>()
          y = Reshape(m, s)
        }
        """,
        {"w1": (8, 3, 3, 3), "w2": (8, 4)},
    )
    an = analysis(proto)
    assert group_of(an, "w1").prunable  # read only by the MatMul
    assert_frozen(group_of(an, "w2"), "graph output")


@pytest.mark.parametrize(
    "target,why",
    [
        ("t = Shape(z)", "target size of axis 1 is read from an unrelated shape"),
        (
            "zero = Constant<value = int64[1] {0}>()\n  k0 = Mul(k, zero)\n"
            "  c32 = Constant<value = int64[1] {32}>()\n  n = Add(k0, c32)\n"
            "  one = Constant<value = int64[1] {1}>()\n  t = Concat<axis = 0>(one, n)",
            "target size of axis 1 is computed at runtime",
        ),
    ],
    ids=["shape-of-other-input", "arithmetic"],
)
def test_reshape_target_from_runtime_value_freezes(target, why):
    proto = build(
        f"""
        g (float[1,3,4,4] x, float[1,32] z, int64[1] k) => (float[1,5] y) {{
          a = Conv(x, w1)
          {target}
          f = Reshape(a, t)
          y = Gemm(f, w2)
        }}
        """,
        {"w1": (8, 3, 3, 3), "w2": (32, 5)},
    )
    assert_frozen(group_of(analysis(proto), "w1"), "Reshape", why)


# -- Transpose, Squeeze, Unsqueeze ------------------------------------------------------


def test_transpose_round_trip():
    proto = build(
        """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          t = Transpose<perm = [0, 2, 3, 1]>(a)
          m = Mul(t, s)
          u = Transpose<perm = [0, 3, 1, 2]>(m)
          y = Conv(u, w2)
        }
        """,
        {"w1": (8, 3, 3, 3), "s": (8,), "w2": (4, 8, 1, 1)},
    )
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    result, _, _ = prune_and_check(proto)
    assert const_input(producer(result.model, "m"), 1).shape == (4,)


SQUEEZE = """
g (float[N,3,6,6] x) => (float[N,4,1,1] y) {{
  a = Conv<pads = [1, 1, 1, 1]>(x, w1, b1)
  p = GlobalAveragePool(a)
  {squeeze}
  h = Gemm<transB = 1>(q, w2, b2)
  r = Relu(h)
  {unsqueeze}
  y = Conv(u, w3)
}}
"""


@pytest.mark.parametrize(
    "opset,squeeze,unsqueeze",
    [
        pytest.param(11, "q = Squeeze<axes = [2, 3]>(p)", "u = Unsqueeze<axes = [2, 3]>(r)", id="attr-11"),
        pytest.param(11, "q = Squeeze<axes = [-1, -2]>(p)", "u = Unsqueeze<axes = [-1, -2]>(r)", id="attr-neg-11"),
        pytest.param(11, "q = Squeeze(p)", "u = Unsqueeze<axes = [2, 3]>(r)", id="no-axes-11"),
        pytest.param(
            13, "ax = Constant<value = int64[2] {2, 3}>()\n  q = Squeeze(p, ax)",
            "ax2 = Constant<value = int64[2] {2, 3}>()\n  u = Unsqueeze(r, ax2)", id="input-13",
        ),
        pytest.param(
            13, "q = Squeeze(p, axs)", "u = Unsqueeze(r, axs)", id="input-shared-13",
        ),
    ],
)
def test_squeeze_unsqueeze(opset, squeeze, unsqueeze):
    weights = {"w1": (8, 3, 3, 3), "b1": (8,), "w2": (16, 8), "b2": (16,), "w3": (4, 16, 1, 1)}
    if "axs" in squeeze:
        weights["axs"] = np.array([2, 3], np.int64)
    proto = build(SQUEEZE.format(squeeze=squeeze, unsqueeze=unsqueeze), weights, opset=opset)
    shapes = {"x": (2, 3, 6, 6)}
    an = analysis(proto, shapes)
    g1, g2 = group_of(an, "w1"), group_of(an, "w2")
    assert (g1.size, g2.size) == (8, 16)
    assert g1.prunable == g1.classes and g2.prunable == g2.classes
    result, _, _ = prune_and_check(proto, input_shapes=shapes)
    assert const_input(producer(result.model, "h"), 1).shape == (8, 4)
    assert const_input(producer(result.model, "y"), 1).shape == (4, 8, 1, 1)
