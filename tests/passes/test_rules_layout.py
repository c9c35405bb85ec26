"""Rules for ops that move, cut, join or reinterpret axes (and the pooling, reduction
and softmax rules they are usually seen with), plus the conservative defaults: ops
without a rule, graph outputs, and shapes read at runtime."""
from __future__ import annotations

import numpy as np
import pytest
from test_rules_common import (
    analysis,
    assert_frozen,
    attr,
    build,
    const_input,
    group_of,
    inexact_reasons,
    producer,
    prune_and_check,
)

from onnxprune.model_io import load_model
from onnxprune.passes.shape_values import entries_of_input

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
    assert const_input(producer(result.model, "p"), 1).shape == (4, 4, 1, 1)
    assert const_input(producer(result.model, "q"), 1).shape == (4, 4, 1, 1)


def test_split_across_a_concat_boundary():
    """Concat(a[8], b[4]) split [6, 6]: the second piece mixes both groups; each
    piece's size counts what each group keeps inside it."""
    proto = build(
        """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, wa)
          b = Conv<pads = [1, 1, 1, 1]>(x, wb)
          c = Concat<axis = 1>(a, b)
          s1, s2 = Split<axis = 1>(c, sp)
          p = Conv(s1, w1)
          q = Conv(s2, w2)
          y = Add(p, q)
        }
        """,
        {
            "wa": (8, 3, 3, 3), "wb": (4, 3, 3, 3), "sp": np.array([6, 6], np.int64),
            "w1": (4, 6, 1, 1), "w2": (4, 6, 1, 1),
        },
    )
    an = analysis(proto)
    assert group_of(an, "wa") is not group_of(an, "wb")
    result, _, _ = prune_and_check(proto, remove={"wa": [0, 6, 7], "wb": [1]})
    assert const_input(producer(result.model, "s1"), 1).tolist() == [5, 3]


def test_c2f_split_bottleneck_concat():
    """YOLOv8 C2f: Split in halves, a residual bottleneck on the second, Concat of all.
    The stream (conv + residual) is one group seen three times by the last conv."""
    proto = build(
        """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, wa)
          s1, s2 = Split<axis = 1>(a, sp)
          m1 = Conv<pads = [1, 1, 1, 1]>(s2, wm1)
          r1 = Relu(m1)
          m2 = Conv<pads = [1, 1, 1, 1]>(r1, wm2)
          m = Add(s2, m2)
          c = Concat<axis = 1>(s1, s2, m)
          y = Conv(c, wo)
        }
        """,
        {
            "wa": (8, 3, 3, 3), "sp": np.array([4, 4], np.int64), "wm1": (4, 4, 3, 3),
            "wm2": (4, 4, 3, 3), "wo": (4, 12, 1, 1),
        },
    )
    an = analysis(proto)
    stream, hidden = group_of(an, "wa"), group_of(an, "wm1")
    assert stream is group_of(an, "wm2") and stream.size == 8 and hidden.size == 4
    assert stream.exact and hidden.exact
    result, _, _ = prune_and_check(proto, remove={"wa": [0, 5, 6], "wm1": [2]})
    m = result.model
    assert const_input(producer(m, "s1"), 1).tolist() == [3, 2]
    assert const_input(producer(m, "y"), 1).shape == (4, 3 + 2 + 2, 1, 1)


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


def test_slice_attribute_form_opset9():
    proto = build(
        """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          s = Slice<starts = [2], ends = [10], axes = [1]>(a)
          y = Conv(s, w2)
        }
        """,
        {"w1": (12, 3, 3, 3), "w2": (4, 8, 1, 1)},
        opset=9,
    )
    result, _, _ = prune_and_check(proto, remove={"w1": [0, 3, 4, 11]})
    s = producer(result.model, "s")
    assert (list(attr(s, "starts")), list(attr(s, "ends"))) == ([1], [7])


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
        pytest.param(
            "s = Shape(r)\n  z0 = Constant<value = int64[1] {0}>()\n  z1 = Constant<value = int64[1] {1}>()\n"
            "  n = Slice(s, z0, z1)\n  rest = Constant<value = int64[1] {32}>()\n"
            "  t = Concat<axis = 0>(n, rest)\n  f = Reshape(r, t)",
            id="Reshape-Shape-Slice,32",
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


@pytest.mark.parametrize(
    "merge",
    [
        "t = Constant<value = int64[2] {1, 48}>()\n  f = Reshape(o, t)",
        "f = Flatten(o)",
    ],
    ids=["Reshape", "Flatten"],
)
def test_merging_two_prunable_axes_freezes_both(merge):
    """An outer product [1,8,1]·[1,1,6] flattened to [1,48]: a feature is a pair of
    channels from two groups, so neither group can lose one on its own."""
    proto = build(
        f"""
        g (float[1,16] x) => (float[1,4] y) {{
          a = Gemm(x, wa)
          b = Gemm(x, wb)
          au = Unsqueeze<axes = [2]>(a)
          bu = Unsqueeze<axes = [1]>(b)
          o = Mul(au, bu)
          {merge}
          y = Gemm(f, w2)
        }}
        """,
        {"wa": (16, 8), "wb": (16, 6), "w2": (48, 4)},
        opset=11,
    )
    an = analysis(proto)
    op = merge.split("= ")[-1].split("(")[0]
    for w in ("wa", "wb"):
        assert_frozen(group_of(an, w), op, "merged with another prunable or unknown-size axis")


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


def test_multi_head_attention_prunes_whole_heads():
    """q/k/v projections reshaped to [B, L, heads, d] with a dynamic batch (targets
    built from Shape): heads are the units, shared by q, k and v, and exact."""
    proto = build(
        """
        g (float[B,5,16] x) => (float[B,5,16] y) {
          q = MatMul(x, wq)
          k = MatMul(x, wk)
          v = MatMul(x, wv)
          s = Shape<end = 2>(x)
          hd = Constant<value = int64[2] {4, 3}>()
          t = Concat<axis = 0>(s, hd)
          q4 = Reshape(q, t)
          k4 = Reshape(k, t)
          v4 = Reshape(v, t)
          qt = Transpose<perm = [0, 2, 1, 3]>(q4)
          kt = Transpose<perm = [0, 2, 3, 1]>(k4)
          vt = Transpose<perm = [0, 2, 1, 3]>(v4)
          sc = MatMul(qt, kt)
          p = Softmax<axis = -1>(sc)
          o = MatMul(p, vt)
          ot = Transpose<perm = [0, 2, 1, 3]>(o)
          m1 = Constant<value = int64[1] {-1}>()
          t2 = Concat<axis = 0>(s, m1)
          o3 = Reshape(ot, t2)
          y = MatMul(o3, wo)
        }
        """,
        {"wq": (16, 12), "wk": (16, 12), "wv": (16, 12), "wo": (12, 16)},
    )
    shapes = {"x": (2, 5, 16)}
    an = analysis(proto, shapes)
    g = group_of(an, "wq")
    assert g is group_of(an, "wk") is group_of(an, "wv")
    assert g.size == 4 and g.prunable == g.classes and g.exact
    result, _, removed = prune_and_check(proto, input_shapes=shapes)
    assert len(removed) == 2
    m = result.model
    assert const_input(producer(m, "q"), 1).shape == (16, 6)
    assert const_input(producer(m, "y"), 1).shape == (6, 16)
    assert entries_of_input(producer(m, "q4"), 1)[2].value == 2  # heads left


def test_channel_shuffle():
    """ShuffleNet: [N,C,H,W] -> [N,g,C/g,H,W] -> swap -> [N,C,H,W]. Each of the g
    blocks is one unit; its channels end up interleaved after the shuffle."""
    proto = build(
        """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          t1 = Constant<value = int64[5] {1, 2, 4, 6, 6}>()
          r = Reshape(a, t1)
          t = Transpose<perm = [0, 2, 1, 3, 4]>(r)
          t2 = Constant<value = int64[4] {1, 8, 6, 6}>()
          b = Reshape(t, t2)
          y = Conv(b, w2)
        }
        """,
        {"w1": (8, 3, 3, 3), "w2": (4, 8, 1, 1)},
    )
    g = group_of(analysis(proto), "w1")
    assert g.size == 2 and g.prunable == g.classes and g.exact
    result, _, _ = prune_and_check(proto)
    m = result.model
    assert const_input(producer(m, "r"), 1).tolist() == [1, 1, 4, 6, 6]
    assert const_input(producer(m, "b"), 1).tolist() == [1, 4, 6, 6]


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


# -- Pad, Resize, Expand ---------------------------------------------------------------

PAD = """
g (float[1,3,6,6] x) => (float[1,4,{h},{h}] y) {{
  a = Conv<pads = [1, 1, 1, 1]>(x, w1)
  {pad}
  y = Conv(p, w2)
}}
"""


@pytest.mark.parametrize(
    "pad,opset,h",
    [
        pytest.param("p = Pad<pads = [0, 0, 1, 1, 0, 0, 1, 1]>(a)", 10, 8, id="attr-10"),
        pytest.param("p = Pad(a, pads)", 13, 8, id="input-13"),
        pytest.param("p = Pad<mode = \"reflect\">(a, pads)", 13, 8, id="reflect-13"),
        pytest.param("p = Pad(a, pads2, , axes)", 18, 8, id="axes-18"),
    ],
)
def test_spatial_pad_passes_channels(pad, opset, h):
    weights = {"w1": (8, 3, 3, 3), "w2": (4, 8, 1, 1)}
    if "pads)" in pad:
        weights["pads"] = np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)
    if "axes" in pad:
        weights["pads2"] = np.array([1, 1, 1, 1], np.int64)
        weights["axes"] = np.array([2, 3], np.int64)
    proto = build(PAD.format(pad=pad, h=h), weights, opset=opset)
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    result, _, _ = prune_and_check(proto)
    assert const_input(producer(result.model, "y"), 1).shape == (4, 4, 1, 1)


@pytest.mark.parametrize(
    "pad,opset",
    [
        pytest.param("p = Pad<pads = [0, 2, 0, 0, 0, 2, 0, 0]>(a)", 10, id="attr-10"),
        pytest.param("p = Pad(a, pads)", 13, id="input-13"),
        pytest.param("p = Pad(a, pads2, , axes)", 18, id="axes-18"),
    ],
)
def test_channel_pad_freezes(pad, opset):
    weights = {"w1": (8, 3, 3, 3), "w2": (4, 12, 1, 1)}
    if "pads)" in pad:
        weights["pads"] = np.array([0, 2, 0, 0, 0, 2, 0, 0], np.int64)
    if "axes" in pad:
        weights["pads2"] = np.array([2, 2], np.int64)
        weights["axes"] = np.array([1], np.int64)
    proto = build(PAD.format(pad=pad, h=6), weights, opset=opset)
    assert_frozen(group_of(analysis(proto), "w1"), "Pad", "padded along this axis")


RESIZE = """
g (float[1,3,4,4] x) => (float[1,4,8,8] y) {{
  a = Conv<pads = [1, 1, 1, 1]>(x, w1)
  {resize}
  y = Conv(u, w2)
}}
"""


@pytest.mark.parametrize(
    "resize,opset",
    [
        pytest.param("u = Resize(a, , scales)", 13, id="scales"),
        pytest.param("u = Resize<mode = \"linear\">(a, , scales)", 13, id="scales-linear"),
        pytest.param("u = Resize(a, , , sizes)", 13, id="sizes"),
        pytest.param("u = Upsample(a, scales)", 9, id="Upsample-9"),
    ],
)
def test_resize_passes_channels_and_rewrites_sizes(resize, opset):
    weights = {"w1": (8, 3, 3, 3), "w2": (4, 8, 1, 1)}
    if "scales" in resize:
        weights["scales"] = np.array([1, 1, 2, 2], np.float32)
    if "sizes" in resize:
        weights["sizes"] = np.array([1, 8, 8, 8], np.int64)
    proto = build(RESIZE.format(resize=resize), weights, opset=opset)
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    result, _, _ = prune_and_check(proto)
    u = producer(result.model, "u")
    if "sizes" in resize:
        assert const_input(u, 3).tolist() == [1, 4, 8, 8]
    assert const_input(producer(result.model, "y"), 1).shape == (4, 4, 1, 1)


SLICE_NC = (
    "sa = Shape(a)\n  z0 = Constant<value = int64[1] {0}>()\n  z2 = Constant<value = int64[1] {2}>()\n"
    "  s = Slice(sa, z0, z2)"
)


@pytest.mark.parametrize("batch", ["1", "N"], ids=["static", "dynamic-batch"])
@pytest.mark.parametrize("read", ["s = Shape<end = 2>(a)", SLICE_NC], ids=["Shape-end", "Slice"])
def test_resize_sizes_from_shape_of_input(batch, read):
    """torch F.interpolate(size=...) exports sizes = Concat(Shape(x)[:2], [H, W]): the
    channel entry is read from the input at runtime and follows pruning by itself
    (static: folded to a literal first, which is rewritten)."""
    proto = build(
        RESIZE.format(
            resize=f"{read}\n  hw = Constant<value = int64[2] {{8, 8}}>()\n"
            "  sizes = Concat<axis = 0>(s, hw)\n  u = Resize(a, , , sizes)"
        ).replace("float[1,", f"float[{batch},"),
        {"w1": (8, 3, 3, 3), "w2": (4, 8, 1, 1)},
    )
    shapes = {"x": (2, 3, 4, 4)} if batch == "N" else None
    g = group_of(analysis(proto, shapes), "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    prune_and_check(proto, input_shapes=shapes)


def test_resize_sizes_from_shape_of_another_tensor():
    """Resize(a, sizes=Concat(Shape(b)[:2], [H, W])) (upsample to match b, as in FPNs):
    a and b must keep the same channels."""
    proto = build(
        """
        g (float[N,3,4,4] x, float[N,3,8,8] xb) => (float[N,4,8,8] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          b = Conv<pads = [1, 1, 1, 1]>(xb, wb)
          s = Shape<end = 2>(b)
          hw = Constant<value = int64[2] {8, 8}>()
          sizes = Concat<axis = 0>(s, hw)
          u = Resize(a, , , sizes)
          yb = Conv(b, w3)
          ya = Conv(u, w2)
          y = Add(ya, yb)
        }
        """,
        {"w1": (8, 3, 3, 3), "wb": (8, 3, 3, 3), "w2": (4, 8, 1, 1), "w3": (4, 8, 1, 1)},
    )
    shapes = {"x": (2, 3, 4, 4), "xb": (2, 3, 8, 8)}
    an = analysis(proto, shapes)
    g = group_of(an, "w1")
    assert g is group_of(an, "wb") and g.prunable == g.classes and g.exact
    prune_and_check(proto, input_shapes=shapes)


def test_resize_along_channels_freezes():
    proto = build(
        RESIZE.format(resize="u = Resize(a, , scales)").replace("float[1,4,8,8] y", "float[1,4,4,4] y"),
        {"w1": (8, 3, 3, 3), "w2": (4, 16, 1, 1), "scales": np.array([1, 2, 1, 1], np.float32)},
    )
    assert_frozen(group_of(analysis(proto), "w1"), "Resize", "resized along this axis")


@pytest.mark.parametrize(
    "shape",
    [[1, 8, 6, 6], [1, 1, 6, 6], [8, 6, 6], [6, 6]],
    ids=["full", "ones-on-C", "rank3", "rank2"],
)
def test_expand_keeps_channels_and_rewrites_the_target(shape):
    """An SE-like gate [N,C,1,1] expanded to [N,C,H,W]: C passes, the literal C in the
    target (when it is one) is rewritten."""
    proto = build(
        """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          p = GlobalAveragePool(a)
          e = Expand(p, shape)
          m = Mul(a, e)
          y = Conv(m, w2)
        }
        """,
        {"w1": (8, 3, 3, 3), "w2": (4, 8, 1, 1), "shape": np.array(shape, np.int64)},
    )
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    result, _, _ = prune_and_check(proto)
    want = [4 if d == 8 else d for d in shape]
    assert const_input(producer(result.model, "e"), 1).tolist() == want


def test_expand_broadcast_axis_joins_the_group_it_meets():
    """[N,1,H,W] expanded to a literal C, then added to a conv output: the expanded
    axis is tied to the conv's channels and its literal is rewritten."""
    proto = build(
        """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          s = Conv<pads = [1, 1, 1, 1]>(x, ws)
          e = Expand(s, shape)
          m = Add(a, e)
          y = Conv(m, w2)
        }
        """,
        {"w1": (8, 3, 3, 3), "ws": (1, 3, 3, 3), "w2": (4, 8, 1, 1), "shape": np.array([1, 8, 6, 6], np.int64)},
    )
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    result, _, _ = prune_and_check(proto)
    assert const_input(producer(result.model, "e"), 1).tolist() == [1, 4, 6, 6]


def test_concat_along_spatial_axis_ties_channels():
    proto = build(
        """
        g (float[1,3,6,6] x) => (float[1,4,12,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          b = Conv<pads = [1, 1, 1, 1]>(x, w3)
          c = Concat<axis = 2>(a, b)
          y = Conv(c, w2)
        }
        """,
        {"w1": (8, 3, 3, 3), "w3": (8, 3, 3, 3), "w2": (4, 8, 1, 1)},
    )
    an = analysis(proto)
    g = group_of(an, "w1")
    assert g is group_of(an, "w3") and g.size == 8 and g.prunable == g.classes
    prune_and_check(proto)


@pytest.mark.parametrize("reps,frozen", [([1, 1, 2, 1], False), ([1, 2, 1, 1], True)], ids=["spatial", "channels"])
def test_tile(reps, frozen):
    h = 12 if reps[2] == 2 else 6
    proto = build(
        f"""
        g (float[1,3,6,6] x) => (float[1,4,{h},6] y) {{
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          c = Tile(a, reps)
          y = Conv(c, w2)
        }}
        """,
        {"w1": (8, 3, 3, 3), "w2": (4, 8 * reps[1], 1, 1), "reps": np.array(reps, np.int64)},
    )
    g = group_of(analysis(proto), "w1")
    if frozen:
        assert_frozen(g, "Tile", "tiled along this axis")
    else:
        assert g.prunable == g.classes and g.exact
        prune_and_check(proto)


# -- Pooling, reductions, softmax -------------------------------------------------------

POOL = """
g (float[1,3,8,8] x) => (float[1,4,{h},{h}] y) {{
  a = Conv<pads = [1, 1, 1, 1]>(x, w1)
  p = {pool}
  y = Conv(p, w2)
}}
"""


@pytest.mark.parametrize(
    "pool,h",
    [
        ("GlobalAveragePool(a)", 1),
        ("GlobalMaxPool(a)", 1),
        ("MaxPool<kernel_shape = [2, 2], strides = [2, 2]>(a)", 4),
        ("AveragePool<kernel_shape = [3, 3], pads = [1, 1, 1, 1]>(a)", 8),
        ("LpPool<kernel_shape = [2, 2], strides = [2, 2]>(a)", 4),
    ],
    ids=lambda p: p if isinstance(p, int) else p.split("<")[0].split("(")[0],
)
def test_pooling_passes_channels(pool, h):
    proto = build(POOL.format(pool=pool, h=h), {"w1": (8, 3, 3, 3), "w2": (4, 8, 1, 1)})
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    prune_and_check(proto)


def test_maxpool_indices_freeze_channels():
    proto = build(
        """
        g (float[1,3,8,8] x) => (float[1,4,4,4] y, int64[1,8,4,4] idx) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          p, idx = MaxPool<kernel_shape = [2, 2], strides = [2, 2]>(a)
          y = Conv(p, w2)
        }
        """,
        {"w1": (8, 3, 3, 3), "w2": (4, 8, 1, 1)},
    )
    assert_frozen(group_of(analysis(proto), "w1"), "MaxPool", "indices encode channel positions")


REDUCE = """
g (float[1,3,6,6] x) => (float[1,4] y) {{
  a = Conv<pads = [1, 1, 1, 1]>(x, w1)
  {reduce}
  y = Gemm(f, w2)
}}
"""


@pytest.mark.parametrize(
    "reduce,opset",
    [
        pytest.param("r = ReduceMean<axes = [2, 3], keepdims = 0>(a)\n  f = Identity(r)", 17, id="attr-keep0"),
        pytest.param("r = ReduceMean<axes = [-2, -1]>(a)\n  f = Flatten(r)", 17, id="attr-neg-keep1"),
        pytest.param("r = ReduceMean<keepdims = 0>(a, axes)\n  f = Identity(r)", 18, id="input-18"),
        pytest.param("r = ReduceMax<axes = [2, 3], keepdims = 0>(a)\n  f = Identity(r)", 17, id="ReduceMax"),
        pytest.param("r = ReduceSum<keepdims = 0>(a, axes)\n  f = Identity(r)", 13, id="ReduceSum-13"),
    ],
)
def test_reduce_over_spatial_is_exact(reduce, opset):
    weights = {"w1": (8, 3, 3, 3), "w2": (8, 4)}
    if "axes)" in reduce:
        weights["axes"] = np.array([2, 3], np.int64)
    proto = build(REDUCE.format(reduce=reduce), weights, opset=opset)
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    result, _, _ = prune_and_check(proto)
    assert const_input(producer(result.model, "y"), 1).shape == (4, 4)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceL2", "ReduceLogSumExp"])
def test_reduce_over_channels_is_inexact(op):
    proto = build(
        f"""
        g (float[1,3,6,6] x) => (float[1,1,6,6] y) {{
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          y = {op}<axes = [1]>(a)
        }}
        """,
        {"w1": (8, 3, 3, 3)},
    )
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes and not g.exact
    assert op in inexact_reasons(g) and "reduces over this axis" in inexact_reasons(g)
    result, _, _ = prune_and_check(proto, exact=False)
    assert const_input(producer(result.model, "a"), 1).shape == (4, 3, 3, 3)


@pytest.mark.parametrize(
    "softmax,opset",
    [
        ("Softmax<axis = 1>(a)", 13), ("LogSoftmax<axis = -3>(a)", 13), ("Softmax<axis = 1>(a)", 11),
    ],
    ids=["Softmax-13", "LogSoftmax-13", "Softmax-11-flattens"],
)
def test_softmax_over_channels_is_inexact(softmax, opset):
    proto = build(
        f"""
        g (float[1,3,6,6] x) => (float[1,4,6,6] y) {{
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          s = {softmax}
          y = Conv(s, w2)
        }}
        """,
        {"w1": (8, 3, 3, 3), "w2": (4, 8, 1, 1)},
        opset=opset,
    )
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes and not g.exact
    assert softmax.split("<")[0] in inexact_reasons(g)
    assert "normalises over this axis" in inexact_reasons(g)
    prune_and_check(proto, exact=False)


def test_softmax_over_spatial_is_exact():
    proto = build(
        """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          s = Softmax<axis = -1>(a)
          y = Conv(s, w2)
        }
        """,
        {"w1": (8, 3, 3, 3), "w2": (4, 8, 1, 1)},
    )
    g = group_of(analysis(proto), "w1")
    assert g.exact and g.prunable == g.classes
    prune_and_check(proto)


@pytest.mark.parametrize("op", ["ArgMax", "Hardmax"])
def test_position_picking_over_channels_freezes(op):
    out = "int64[1,1,6,6]" if op == "ArgMax" else "float[1,8,6,6]"
    proto = build(
        f"""
        g (float[1,3,6,6] x) => ({out} y) {{
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          y = {op}<axis = 1>(a)
        }}
        """,
        {"w1": (8, 3, 3, 3)},
    )
    g = group_of(analysis(proto), "w1")
    assert_frozen(g, op, "position" if op == "ArgMax" else "picks one position")


# -- Gather, ops without a rule, graph outputs ------------------------------------------


@pytest.mark.parametrize("idx", [np.array([0, 2, 4], np.int64), np.array(3, np.int64)], ids=["list", "scalar"])
def test_gather_on_channel_axis_freezes(idx):
    out = "float[1,3,6,6]" if idx.ndim else "float[1,6,6]"
    proto = build(
        f"""
        g (float[1,3,6,6] x) => ({out} y) {{
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          y = Gather<axis = 1>(a, idx)
        }}
        """,
        {"w1": (8, 3, 3, 3), "idx": idx},
    )
    assert_frozen(group_of(analysis(proto), "w1"), "Gather", "gathers positions along this axis")


def test_gather_on_spatial_axis_passes_channels():
    proto = build(
        """
        g (float[1,3,6,6] x) => (float[1,4,3,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          s = Gather<axis = 2>(a, idx)
          y = Conv(s, w2)
        }
        """,
        {"w1": (8, 3, 3, 3), "w2": (4, 8, 1, 1), "idx": np.array([0, 2, 4], np.int64)},
    )
    g = group_of(analysis(proto), "w1")
    assert g.size == 8 and g.prunable == g.classes and g.exact
    prune_and_check(proto)


@pytest.mark.parametrize(
    "op,hw",
    [
        ("LRN<size = 3>(a)", 6),
        ("DepthToSpace<blocksize = 2>(a)", 12),
        ("SpaceToDepth<blocksize = 2>(a)", 3),
        ("CumSum(a, one)", 6),
        ("LpNormalization<axis = 1>(a)", 6),
    ],
    ids=["LRN", "DepthToSpace", "SpaceToDepth", "CumSum", "LpNormalization"],
)
def test_op_without_rule_freezes_and_names_it(op, hw):
    name = op.split("<")[0].split("(")[0]
    proto = build(
        f"""
        g (float[1,3,6,6] x) => (float[1,1,{hw},{hw}] y) {{
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          u = {op}
          y = ReduceMean<axes = [1]>(u)
        }}
        """,
        {"w1": (8, 3, 3, 3), **({"one": np.array(1, np.int64)} if "one" in op else {})},
    )
    g = group_of(analysis(proto), "w1")
    assert_frozen(g, name, f"{name} has no pruning rule")
    assert g.reasons() == [f"{name} '{name}_1': {name} has no pruning rule"]


def test_graph_output_freezes_names_output_and_axis():
    proto = build(
        """
        g (float[1,3,6,6] x) => (float[1,8,6,6] feat, float[1,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          feat = Relu(a)
          y = Conv(feat, w2)
        }
        """,
        {"w1": (8, 3, 3, 3), "w2": (4, 8, 1, 1)},
    )
    an = analysis(proto)
    assert_frozen(group_of(an, "w1"), "graph output 'feat' exposes axis 1")
    assert_frozen(group_of(an, "w2"), "graph output 'y' exposes axis 1")


def test_ignored_node_freezes_by_request():
    from onnxprune.compiler.pipeline import analyze

    proto = build(
        """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, w1)
          y = Conv(a, w2)
        }
        """,
        {"w1": (8, 3, 3, 3), "w2": (4, 8, 1, 1)},
    )
    an, _, _ = analyze(load_model(proto), ignore=("Conv_0",))
    assert_frozen(group_of(an, "w1"), "node 'Conv_0' is ignored by request")


# -- Shapes read at runtime --------------------------------------------------------------
# With a symbolic batch, Shape(a) stays a runtime value (static dims alone are folded into
# constants before the analysis); whatever reads a prunable axis's size must be checked.

DYN = {"x": (2, 3, 6, 6)}
NC = "s = Shape(a)\n  i = Constant<value = int64[2] {0, 1}>()\n  nc = Gather(s, i)"
NC_SLICE = (
    "s = Shape(a)\n  z0 = Constant<value = int64[1] {0}>()\n  z2 = Constant<value = int64[1] {2}>()\n"
    "  nc = Slice(s, z0, z2)"
)


@pytest.mark.parametrize("read", [NC, NC_SLICE, "nc = Shape<end = 2>(a)"], ids=["Gather", "Slice", "Shape-end"])
def test_runtime_channel_count_read_by_unrelated_reshape_freezes_both(read):
    """Reshape(b, [N, C_a, -1]): pruning a alone would re-lay b out, pruning b alone
    would break the Reshape."""
    proto = build(
        f"""
        g (float[N,3,6,6] x) => (float[N,4] y) {{
          a = Conv<pads = [1, 1, 1, 1]>(x, wa)
          b = Conv<pads = [1, 1, 1, 1]>(x, wb)
          {read}
          rest = Constant<value = int64[1] {{-1}}>()
          t = Concat<axis = 0>(nc, rest)
          r = Reshape(b, t)
          m = ReduceMean<axes = [2], keepdims = 0>(r)
          am = GlobalAveragePool(a)
          fa = Flatten(am)
          ha = Gemm(fa, wa2)
          hb = Gemm(m, wb2)
          y = Add(ha, hb)
        }}
        """,
        {"wa": (8, 3, 3, 3), "wb": (8, 3, 3, 3), "wa2": (8, 4), "wb2": (8, 4)},
    )
    an = analysis(proto, DYN)
    assert_frozen(group_of(an, "wa"), "Reshape", "its size is read at runtime as target size of axis 1")
    assert_frozen(group_of(an, "wb"), "Reshape", "target size of axis 1 is read from an unrelated shape")
    prune_and_check(proto, input_shapes=DYN, expect_removed=False)


def test_runtime_channel_count_of_the_same_tensor_follows_it():
    """Reshape(a, [N, C_a, -1]) reads a's own channel count: it follows the pruning."""
    proto = build(
        f"""
        g (float[N,3,6,6] x) => (float[N,4] y) {{
          a = Conv<pads = [1, 1, 1, 1]>(x, wa)
          {NC}
          rest = Constant<value = int64[1] {{-1}}>()
          t = Concat<axis = 0>(nc, rest)
          r = Reshape(a, t)
          m = ReduceMean<axes = [2], keepdims = 0>(r)
          y = Gemm(m, w2)
        }}
        """,
        {"wa": (8, 3, 3, 3), "w2": (8, 4)},
    )
    g = group_of(analysis(proto, DYN), "wa")
    assert g.prunable == g.classes and g.exact
    prune_and_check(proto, input_shapes=DYN)


def test_static_channel_count_is_folded_and_rewritten():
    """With static shapes Gather(Shape(a), 1) is a constant 8 before the analysis: the
    Reshape of b then has a literal target that follows b, and a is free."""
    proto = build(
        """
        g (float[1,3,6,6] x) => (float[1,4] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, wa)
          b = Conv<pads = [1, 1, 1, 1]>(x, wb)
          s = Shape(a)
          i = Constant<value = int64[1] {1}>()
          c = Gather(s, i)
          n = Constant<value = int64[1] {1}>()
          rest = Constant<value = int64[1] {-1}>()
          t = Concat<axis = 0>(n, c, rest)
          r = Reshape(b, t)
          m = ReduceMean<axes = [2], keepdims = 0>(r)
          am = GlobalAveragePool(a)
          fa = Flatten(am)
          ha = Gemm(fa, wa2)
          hb = Gemm(m, wb2)
          y = Add(ha, hb)
        }
        """,
        {"wa": (8, 3, 3, 3), "wb": (8, 3, 3, 3), "wa2": (8, 4), "wb2": (8, 4)},
    )
    an = analysis(proto)
    ga, gb = group_of(an, "wa"), group_of(an, "wb")
    assert ga is not gb and ga.prunable == ga.classes and gb.prunable == gb.classes
    result, _, _ = prune_and_check(proto, remove={"wa": [0, 1, 2], "wb": [3]})
    assert entries_of_input(producer(result.model, "r"), 1)[1].value == 7


@pytest.mark.parametrize(
    "reader,name",
    [
        ("z = ConstantOfShape<value = float[1] {1.0}>(s)\n  u = Add(b, z)", "ConstantOfShape"),
        ("p = ReduceProd<keepdims = 0>(s)\n  pf = Cast<to = 1>(p)\n  u = Div(b, pf)", "ReduceProd"),
        (
            "z2 = Constant<value = int64[1] {2}>()\n  z0 = Constant<value = int64[1] {0}>()\n"
            "  nc = Slice(s, z0, z2)\n  p = ReduceProd<keepdims = 0>(nc)\n  pf = Cast<to = 1>(p)\n"
            "  u = Div(b, pf)",
            "ReduceProd",
        ),
    ],
    ids=["ConstantOfShape", "ReduceProd", "Slice-ReduceProd"],
)
def test_runtime_channel_count_in_arithmetic_freezes(reader, name):
    """Sizes used as numbers: pruning a would silently change them."""
    proto = build(
        f"""
        g (float[N,3,6,6] x) => (float[N,4,6,6] y) {{
          a = Conv<pads = [1, 1, 1, 1]>(x, wa)
          b = Conv<pads = [1, 1, 1, 1]>(x, wb)
          s = Shape(a)
          i0 = Constant<value = int64 {{0}}>()
          {reader}
          p1 = Conv(u, w2)
          p2 = Conv(a, wa2)
          y = Add(p1, p2)
        }}
        """,
        {"wa": (8, 3, 3, 3), "wb": (8, 3, 3, 3), "w2": (4, 8, 1, 1), "wa2": (4, 8, 1, 1)},
    )
    an = analysis(proto, DYN)
    assert_frozen(group_of(an, "wa"), "Shape", "the size of axis 1 is read at runtime by", name)
    prune_and_check(proto, input_shapes=DYN, expect_removed=False, exact=False)


def test_runtime_shape_as_graph_output_freezes():
    proto = build(
        """
        g (float[N,3,6,6] x) => (float[N,4,6,6] y, int64[4] s) {
          a = Conv<pads = [1, 1, 1, 1]>(x, wa)
          s = Shape(a)
          y = Conv(a, w2)
        }
        """,
        {"wa": (8, 3, 3, 3), "w2": (4, 8, 1, 1)},
    )
    assert_frozen(group_of(analysis(proto, DYN), "wa"), "Shape", "read at runtime by graph output 's'")


def test_channel_count_read_into_arithmetic_freezes():
    """Gather(Shape(a), 1) feeding arithmetic on data is not folded (only values that
    end in shape slots are): dividing by the channel count is a runtime read of a's
    width, so a's channels are frozen with a reason instead of silently keeping 8."""
    proto = build(
        """
        g (float[N,3,6,6] x) => (float[N,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, wa)
          s = Shape(a)
          i = Constant<value = int64 {1}>()
          c = Gather(s, i)
          cf = Cast<to = 1>(c)
          u = Div(a, cf)
          y = Conv(u, w2)
        }
        """,
        {"wa": (8, 3, 3, 3), "w2": (4, 8, 1, 1)},
    )
    g = group_of(analysis(proto, DYN), "wa")
    assert not g.prunable
    assert any("read at runtime" in r for r in g.reasons()), g.reasons()


@pytest.mark.parametrize("third", [False, True], ids=["two-groups", "and-a-fixed-reader"])
def test_reshape_target_shared_across_groups(third):
    """One target Concat(Shape(x)[:1], [8], [-1]) read by Reshapes of two groups
    pruned differently (and of a graph input that is not pruned): each gets its own."""
    extra = (
        "rz = Reshape(z, t)\n  mz = ReduceMean<axes = [2], keepdims = 0>(rz)\n  hz = Gemm(mz, wz2)\n"
        "  y = Sum(ha, hb, hz)" if third else "y = Add(ha, hb)"
    )
    proto = build(
        f"""
        g (float[N,3,6,6] x, float[N,8,6,6] z) => (float[N,4] y) {{
          a = Conv<pads = [1, 1, 1, 1]>(x, wa)
          b = Conv<pads = [1, 1, 1, 1]>(x, wb)
          s = Shape<end = 1>(x)
          c8 = Constant<value = int64[1] {{8}}>()
          m1 = Constant<value = int64[1] {{-1}}>()
          t = Concat<axis = 0>(s, c8, m1)
          ra = Reshape(a, t)
          rb = Reshape(b, t)
          ma = ReduceMean<axes = [2], keepdims = 0>(ra)
          mb = ReduceMean<axes = [2], keepdims = 0>(rb)
          ha = Gemm(ma, wa2)
          hb = Gemm(mb, wb2)
          {extra}
        }}
        """,
        {"wa": (8, 3, 3, 3), "wb": (8, 3, 3, 3), "wa2": (8, 4), "wb2": (8, 4), "wz2": (8, 4)},
    )
    shapes = {"x": (2, 3, 6, 6), "z": (2, 8, 6, 6)}
    an = analysis(proto, shapes)
    ga, gb = group_of(an, "wa"), group_of(an, "wb")
    assert ga is not gb and ga.prunable == ga.classes and gb.prunable == gb.classes
    result, _, _ = prune_and_check(proto, input_shapes=shapes, remove={"wa": [0, 1], "wb": [5, 6, 7]})
    m = result.model
    assert entries_of_input(producer(m, "ra"), 1)[1].value == 6
    assert entries_of_input(producer(m, "rb"), 1)[1].value == 5
    if third:
        assert entries_of_input(producer(m, "rz"), 1)[1].value == 8


def test_expand_target_shared_across_groups():
    proto = build(
        """
        g (float[N,3,6,6] x) => (float[N,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, wa)
          b = Conv<pads = [1, 1, 1, 1]>(x, wb)
          ga = GlobalAveragePool(a)
          gb = GlobalAveragePool(b)
          s = Shape<end = 1>(x)
          c = Constant<value = int64[3] {8, 6, 6}>()
          t = Concat<axis = 0>(s, c)
          ea = Expand(ga, t)
          eb = Expand(gb, t)
          pa = Mul(a, ea)
          pb = Mul(b, eb)
          qa = Conv(pa, w2)
          qb = Conv(pb, w3)
          y = Add(qa, qb)
        }
        """,
        {"wa": (8, 3, 3, 3), "wb": (8, 3, 3, 3), "w2": (4, 8, 1, 1), "w3": (4, 8, 1, 1)},
    )
    shapes = {"x": (2, 3, 6, 6)}
    result, _, _ = prune_and_check(proto, input_shapes=shapes, remove={"wa": [0, 1], "wb": [5, 6, 7]})
    m = result.model
    assert entries_of_input(producer(m, "ea"), 1)[1].value == 6
    assert entries_of_input(producer(m, "eb"), 1)[1].value == 5


def test_runtime_batch_size_in_arithmetic_leaves_channels_alone():
    """Shape(a)[0] (the batch) used as a number reads no channel: a stays prunable."""
    proto = build(
        """
        g (float[N,3,6,6] x) => (float[N,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, wa)
          s = Shape(a)
          i0 = Constant<value = int64 {0}>()
          n = Gather(s, i0)
          nf = Cast<to = 1>(n)
          u = Div(a, nf)
          y = Conv(u, w2)
        }
        """,
        {"wa": (8, 3, 3, 3), "w2": (4, 8, 1, 1)},
    )
    g = group_of(analysis(proto, DYN), "wa")
    assert g.prunable == g.classes and g.exact
    prune_and_check(proto, input_shapes=DYN)


def test_runtime_shape_into_expand_follows_the_axis_read():
    """Expand(g[N,1,H,W], Shape(a)): the expanded channels are a's, pruned with them."""
    proto = build(
        """
        g (float[N,3,6,6] x) => (float[N,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, wa)
          b = Conv<pads = [1, 1, 1, 1]>(x, wb)
          g = Conv(b, wg)
          s = Shape(a)
          e = Expand(g, s)
          m = Conv(e, w3)
          n = Conv(a, w4)
          y = Add(m, n)
        }
        """,
        {"wa": (8, 3, 3, 3), "wb": (8, 3, 3, 3), "wg": (1, 8, 1, 1), "w3": (4, 8, 1, 1), "w4": (4, 8, 1, 1)},
    )
    an = analysis(proto, DYN)
    ga = group_of(an, "wa")
    assert ga.prunable == ga.classes and ga.exact
    assert ("const", "w3", 1, "in") in ga.members
    result, _, _ = prune_and_check(proto, input_shapes=DYN)
    assert const_input(producer(result.model, "m"), 1).shape == (4, 4, 1, 1)


def test_runtime_shape_into_expand_ties_equal_axes():
    """Expand(b, Shape(a)) with b and a of the same width: they must prune alike."""
    proto = build(
        """
        g (float[N,3,6,6] x) => (float[N,4,6,6] y) {
          a = Conv<pads = [1, 1, 1, 1]>(x, wa)
          b = Conv(x, wb, bb)
          p = GlobalAveragePool(b)
          s = Shape(a)
          e = Expand(p, s)
          m = Conv(e, w3)
          n = Conv(a, w4)
          y = Add(m, n)
        }
        """,
        {
            "wa": (8, 3, 3, 3), "wb": (8, 3, 6, 6), "bb": (8,), "w3": (4, 8, 1, 1), "w4": (4, 8, 1, 1),
        },
    )
    an = analysis(proto, DYN)
    assert group_of(an, "wa") is group_of(an, "wb")
    prune_and_check(proto, input_shapes=DYN)
