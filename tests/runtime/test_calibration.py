"""Calibration data: every source kind on real models, numbers checked, every error one line."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnx.parser
import onnx_ir as ir
import onnxruntime as ort
import pytest

from onnxprune.errors import OnnxPruneError
from onnxprune.runtime.calibration import (
    CalibrationData,
    ImagePreprocess,
    load_calibration,
    parse_preprocess,
)

MODELS = Path(__file__).resolve().parents[2] / "models"
DIGITS_MODEL = MODELS / "digits" / "digits_resnet.onnx"
DIGITS_CALIB = MODELS / "digits" / "digits_calib.npz"
RESNET20 = MODELS / "zoo" / "resnet20.onnx"
BERT = MODELS / "transformers" / "bert.onnx"

IMAGENET = "mean=0.485/0.456/0.406,std=0.229/0.224/0.225"


@pytest.fixture(scope="module")
def digits():
    return ir.load(DIGITS_MODEL)


@pytest.fixture(scope="module")
def digits_xy():
    with np.load(DIGITS_CALIB) as data:
        return data["x"], data["y"]


@pytest.fixture(scope="module")
def resnet20():
    return ir.load(RESNET20)


@pytest.fixture(scope="module")
def bert():
    return ir.load(BERT)


def session(path_or_proto) -> ort.InferenceSession:
    source = path_or_proto.SerializeToString() if isinstance(path_or_proto, onnx.ModelProto) else str(path_or_proto)
    return ort.InferenceSession(source, providers=["CPUExecutionProvider"])


def error_of(fn, *words) -> str:
    """Run fn, expect an OnnxPruneError of one line that mentions every word (case-insensitive)."""
    with pytest.raises(OnnxPruneError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in: {message}"
    return message


def bert_tokens(n: int, seq: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "input_ids": rng.integers(0, 100, size=(n, seq)).astype(np.int64),
        "attention_mask": np.ones((n, seq), dtype=np.int64),
    }


# --------------------------------------------------------------------------- npz / npy


def test_npz_all_samples_with_labels(digits, digits_xy):
    x, y = digits_xy
    data = load_calibration(DIGITS_CALIB, digits)
    assert isinstance(data, CalibrationData)
    assert data.n == len(data) == 256 and data.inputs == ["input"] and data.indices is None
    assert data.feeds()["input"].dtype == np.float32
    np.testing.assert_array_equal(data.feeds()["input"], x)
    np.testing.assert_array_equal(data.labels, y)


def test_batches_cover_the_samples_in_order(digits, digits_xy):
    data = load_calibration(DIGITS_CALIB, digits, samples=100, batch_size=32)
    batches = list(data.batches())
    assert [len(b["input"]) for b in batches] == [32, 32, 32, 4]
    assert all(set(b) == {"input"} for b in batches)
    np.testing.assert_array_equal(np.concatenate([b["input"] for b in batches]), data.feeds()["input"])
    assert [len(b["input"]) for b in data.batches(50)] == [50, 50]
    assert [len(b["input"]) for b in data.batches(1000)] == [100]


def test_seed_fixes_the_selection(digits, digits_xy):
    x, y = digits_xy
    a = load_calibration(DIGITS_CALIB, digits, samples=64, seed=3)
    b = load_calibration(DIGITS_CALIB, digits, samples=64, seed=3)
    c = load_calibration(DIGITS_CALIB, digits, samples=64, seed=4)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.feeds()["input"], b.feeds()["input"])
    assert not np.array_equal(a.indices, c.indices)
    # rows and labels stay paired, in source order, and a larger N is a superset
    assert np.all(np.diff(a.indices) > 0) and len(np.unique(a.indices)) == 64
    np.testing.assert_array_equal(a.feeds()["input"], x[a.indices])
    np.testing.assert_array_equal(a.labels, y[a.indices])
    bigger = load_calibration(DIGITS_CALIB, digits, samples=128, seed=3)
    assert set(a.indices) <= set(bigger.indices)


def test_onnxruntime_accepts_the_batches(digits, digits_xy):
    data = load_calibration(DIGITS_CALIB, digits, samples=96, batch_size=32, seed=0)
    sess = session(DIGITS_MODEL)
    correct = 0
    for batch, start in zip(data.batches(), range(0, data.n, 32)):
        (logits,) = sess.run(None, batch)
        assert logits.shape == (len(batch["input"]), 10)
        correct += int((logits.argmax(1) == data.labels[start:start + 32]).sum())
    assert correct / data.n > 0.8  # the real trained model on real digits: labels line up with rows


def test_npy_and_float64_cast(tmp_path, digits, digits_xy):
    x, _ = digits_xy
    path = tmp_path / "x.npy"
    np.save(path, x.astype(np.float64))
    data = load_calibration(path, digits, samples=10, seed=1)
    assert data.labels is None and data.n == 10
    assert data.feeds()["input"].dtype == np.float32
    np.testing.assert_array_equal(data.feeds()["input"], x[data.indices])
    assert not isinstance(data.feeds()["input"], np.memmap)


def test_npz_with_lone_array_or_input_name(tmp_path, digits, digits_xy):
    x, _ = digits_xy
    np.savez(tmp_path / "lone.npz", x[:5])
    np.savez(tmp_path / "named.npz", input=x[:7], y=np.arange(7))
    assert load_calibration(tmp_path / "lone.npz", digits).n == 5
    named = load_calibration(tmp_path / "named.npz", digits)
    assert named.n == 7 and list(named.labels) == list(range(7))


def test_single_sample_array_is_one_row(digits, digits_xy):
    x, _ = digits_xy
    data = load_calibration(x[0], digits)  # rank 3 against a rank-4 input: one sample
    assert data.n == 1 and data.feeds()["input"].shape == (1, 1, 8, 8)


# --------------------------------------------------------------------------- multi-input (transformer)


def test_bert_dict_source(bert):
    assert [v.name for v in bert.graph.inputs] == ["input_ids", "attention_mask"]
    tokens = bert_tokens(20)
    source = {"input_ids": tokens["input_ids"].astype(np.int32), "attention_mask": tokens["attention_mask"] > 0,
              "y": np.arange(20)}
    data = load_calibration(source, bert, samples=8, batch_size=3, seed=2)
    assert data.inputs == ["input_ids", "attention_mask"] and data.n == 8
    feeds = data.feeds()
    assert feeds["input_ids"].dtype == np.int64 and feeds["attention_mask"].dtype == np.int64
    np.testing.assert_array_equal(feeds["input_ids"], tokens["input_ids"][data.indices])
    np.testing.assert_array_equal(data.labels, data.indices)
    batches = list(data.batches())
    assert [len(b["input_ids"]) for b in batches] == [3, 3, 2]
    sess = session(BERT)
    (logits,) = sess.run(None, batches[0])
    assert logits.shape == (3, 2)


def test_bert_npz(tmp_path, bert):
    np.savez(tmp_path / "tok.npz", **bert_tokens(12))
    data = load_calibration(tmp_path / "tok.npz", bert, input_shapes={"input_ids": (1, 16)})
    assert data.n == 12 and data.labels is None


# --------------------------------------------------------------------------- iterables


def test_generator_of_samples_stops_at_n(digits, digits_xy):
    x, y = digits_xy
    pulled = []

    def gen():
        for i in range(len(x)):
            pulled.append(i)
            yield x[i]  # one sample per item (rank 3)

    data = load_calibration(gen(), digits, samples=10)
    assert data.n == 10 and pulled == list(range(10)) and data.indices is None
    np.testing.assert_array_equal(data.feeds()["input"], x[:10])


def test_iterable_of_batches_and_labels(digits, digits_xy):
    x, y = digits_xy
    items = [(x[i:i + 8], y[i:i + 8]) if i % 16 else [x[i:i + 8], y[i:i + 8]] for i in range(0, 40, 8)]
    data = load_calibration(items, digits, samples=20)
    assert data.n == 20
    np.testing.assert_array_equal(data.feeds()["input"], x[:20])
    np.testing.assert_array_equal(data.labels, y[:20])
    assert load_calibration(iter(items), digits).n == 40


def test_iterable_of_dicts_for_bert(bert):
    tokens = bert_tokens(6)
    items = ({name: a[i] for name, a in tokens.items()} for i in range(6))
    data = load_calibration(items, bert)
    assert data.n == 6
    np.testing.assert_array_equal(data.feeds()["input_ids"], tokens["input_ids"])


# --------------------------------------------------------------------------- images


def _pil():
    return pytest.importorskip("PIL.Image")


def _write(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _pil().fromarray(pixels).save(path)


def test_images_for_digits_gray_and_rgb_resized(tmp_path, digits):
    Image = _pil()
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, size=(16, 16), dtype=np.uint8)
    rgb = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    _write(tmp_path / "b" / "z.png", gray)  # sorted by relative path: a.png, b/z.png
    _write(tmp_path / "a.png", rgb)
    pre = ImagePreprocess(mean=(0.5,), std=(0.25,))
    data = load_calibration(tmp_path, digits, preprocess=pre)
    got = data.feeds()["input"]
    assert got.shape == (2, 1, 8, 8) and got.dtype == np.float32 and data.labels is None

    def manual(image):
        small = np.asarray(image.convert("L").resize((8, 8), Image.Resampling.BILINEAR), dtype=np.float64)
        return (small / 255 - 0.5) / 0.25

    np.testing.assert_allclose(got[0, 0], manual(Image.fromarray(rgb)), atol=1e-5)
    np.testing.assert_allclose(got[1, 0], manual(Image.fromarray(gray)), atol=1e-5)
    (logits,) = session(DIGITS_MODEL).run(None, data.feeds())
    assert logits.shape == (2, 10)


def _rgb_folder(tmp_path: Path, count: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8) for _ in range(count)]
    for i, pixels in enumerate(images):
        _write(tmp_path / "imgs" / f"{i:02d}.png", pixels)
    return images


def test_images_for_resnet20_nchw_mean_std(tmp_path, resnet20):
    images = _rgb_folder(tmp_path)
    data = load_calibration(tmp_path / "imgs", resnet20, preprocess=f"{IMAGENET},layout=NCHW")
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = np.stack([((p / 255.0 - mean) / std).transpose(2, 0, 1) for p in images])
    got = data.feeds()["input"]
    assert got.shape == (3, 3, 32, 32)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    (logits,) = session(RESNET20).run(None, data.feeds())
    assert logits.shape[0] == 3


def test_images_nhwc_layout(tmp_path, resnet20):
    images = _rgb_folder(tmp_path)
    nhwc = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        to_nchw (float[N,32,32,3] x) => (float[N,3,32,32] y) { y = Transpose<perm = [0, 3, 1, 2]>(x) }
    """)
    model = ir.serde.deserialize_model(nhwc)
    data = load_calibration(tmp_path / "imgs", model, preprocess=f"{IMAGENET},layout=NHWC")
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = np.stack([(p / 255.0 - mean) / std for p in images])
    np.testing.assert_allclose(data.feeds()["x"], expected, atol=1e-5)
    nchw = load_calibration(tmp_path / "imgs", resnet20, preprocess=f"{IMAGENET},layout=NCHW")
    (y,) = session(nhwc).run(None, data.feeds())
    np.testing.assert_array_equal(y, nchw.feeds()["input"])
    # NHWC against an NCHW model finds 32 "channels": refused, naming the layout
    error_of(lambda: load_calibration(tmp_path / "imgs", resnet20, preprocess="layout=NHWC"), "32 channels", "layout")


def test_images_samples_seed_and_formats(tmp_path, resnet20):
    rng = np.random.default_rng(2)
    for i, ext in enumerate(["png", "jpg", "JPEG", "bmp", "png", "bmp"]):
        _write(tmp_path / "mixed" / f"{i}.{ext}", rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8))
    (tmp_path / "mixed" / "notes.txt").write_text("not an image")
    every = load_calibration(tmp_path / "mixed", resnet20, preprocess="")
    assert every.n == 6 and every.feeds()["input"].shape == (6, 3, 32, 32)
    a = load_calibration(tmp_path / "mixed", resnet20, samples=4, seed=5, preprocess="")
    b = load_calibration(tmp_path / "mixed", resnet20, samples=4, seed=5, preprocess="")
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.feeds()["input"], every.feeds()["input"][a.indices])


# --------------------------------------------------------------------------- parse_preprocess


def test_parse_preprocess():
    pre = parse_preprocess("resize=224x224, mean=0.485/0.456/0.406,std=0.229/0.224/0.225,layout=nhwc,scale=1/255")
    assert pre.size == (224, 224) and pre.mean == (0.485, 0.456, 0.406) and pre.std == (0.229, 0.224, 0.225)
    assert pre.layout == "NHWC" and pre.scale == pytest.approx(1 / 255)
    assert parse_preprocess("") == ImagePreprocess()
    assert parse_preprocess("channels=1,interpolation=bicubic,scale=0.5").channels == 1


@pytest.mark.parametrize("text, words", [
    ("resize=224", ["resize", "hxw"]),
    ("resize=axb", ["not a number"]),
    ("mean=0.5/x", ["mean", "not a number"]),
    ("std=0", ["std", "non-zero"]),
    ("layout=CHW", ["layout", "nchw or nhwc"]),
    ("crop=224", ["unknown key 'crop'"]),
    ("mean=1,mean=2", ["twice"]),
    ("mean", ["key=value"]),
    ("channels=4", ["channels"]),
    ("mean=1/2", ["1 or 3 values"]),
])
def test_parse_preprocess_errors(text, words):
    error_of(lambda: parse_preprocess(text), "bad --preprocess", *words)


# --------------------------------------------------------------------------- errors


def test_errors_files(tmp_path, digits, bert, digits_xy):
    x, _ = digits_xy
    error_of(lambda: load_calibration(tmp_path / "nope.npz", digits), "does not exist")
    (tmp_path / "data.csv").write_text("1,2,3")
    error_of(lambda: load_calibration(tmp_path / "data.csv", digits), "unknown extension", ".csv")
    np.savez(tmp_path / "ids.npz", input_ids=bert_tokens(4)["input_ids"])
    error_of(lambda: load_calibration(tmp_path / "ids.npz", bert), "attention_mask", "keys input_ids",
             "wants input_ids, attention_mask")
    np.savez(tmp_path / "two.npz", a=x, b=x)
    error_of(lambda: load_calibration(tmp_path / "two.npz", digits), "input", "keys a, b")
    np.save(tmp_path / "one.npy", bert_tokens(4)["input_ids"])
    error_of(lambda: load_calibration(tmp_path / "one.npy", bert), ".npy", "2 inputs", ".npz")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    error_of(lambda: load_calibration(tmp_path / "junk.npy", digits), "cannot read", "junk.npy")


def test_errors_shapes_and_counts(digits, bert, digits_xy):
    x, y = digits_xy
    error_of(lambda: load_calibration(np.zeros((4, 1, 9, 9), np.float32), digits),
             "[4, 1, 9, 9]", "expects [batch,1,8,8]", "axis 2 must be 8")
    error_of(lambda: load_calibration(np.zeros((4, 64), np.float32), digits), "rank 2", "[batch,1,8,8]")
    tokens = bert_tokens(10)
    tokens["attention_mask"] = tokens["attention_mask"][:9]
    error_of(lambda: load_calibration(tokens, bert), "different sample counts", "input_ids: 10", "attention_mask: 9")
    short = bert_tokens(10)
    short["attention_mask"] = short["attention_mask"][:, :12]
    error_of(lambda: load_calibration(short, bert), "dim 'seq'", "16", "12")
    error_of(lambda: load_calibration(bert_tokens(3), bert, input_shapes={"input_ids": (1, 32)}),
             "axis 1 must be 32")
    error_of(lambda: load_calibration({"x": x, "y": y[:5]}, digits), "256 samples", "5 labels")


def test_errors_dtypes(digits, bert, digits_xy):
    x, _ = digits_xy
    tokens = bert_tokens(4)
    tokens["input_ids"] = tokens["input_ids"].astype(np.float32)
    error_of(lambda: load_calibration(tokens, bert), "input_ids", "float32", "int64", "refused")
    error_of(lambda: load_calibration(tokens["attention_mask"], bert), "has 2", "pass a dict")
    error_of(lambda: load_calibration((x * 255).astype(np.uint8), digits), "uint8", "float32", "scale")
    int32_model = ir.serde.deserialize_model(onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        ident (int32[N,4] ids) => (int32[N,4] out) { out = Identity(ids) }
    """))
    error_of(lambda: load_calibration(np.full((2, 4), 2**40), int32_model), "outside int32")
    assert load_calibration(np.full((2, 4), 7), int32_model).feeds()["ids"].dtype == np.int32
    half_model = ir.serde.deserialize_model(onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        ident (float16[N,4] x) => (float16[N,4] out) { out = Identity(x) }
    """))
    error_of(lambda: load_calibration(np.full((2, 4), 1e6, np.float32), half_model), "overflow float16")


def test_fixed_batch_model():
    fixed = ir.serde.deserialize_model(onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        ident (float[2,4] x) => (float[2,4] out) { out = Identity(x) }
    """))
    data = load_calibration(np.zeros((6, 4), np.float32), fixed, batch_size=4)
    assert [len(b["x"]) for b in data.batches()] == [2, 2, 2]
    error_of(lambda: load_calibration(np.zeros((5, 4), np.float32), fixed), "fixes the batch axis at 2", "5 samples")


def test_errors_samples(tmp_path, digits, digits_xy):
    x, _ = digits_xy
    for bad in (0, -3):
        error_of(lambda: load_calibration(DIGITS_CALIB, digits, samples=bad), "samples must be a positive")
    error_of(lambda: load_calibration(DIGITS_CALIB, digits, samples=1000), "only 256 samples", "samples=1000")
    error_of(lambda: load_calibration(iter([x[:5], x[5:8]]), digits, samples=10), "only 8 samples")
    error_of(lambda: load_calibration(iter([]), digits), "no samples")
    error_of(lambda: load_calibration(DIGITS_CALIB, digits, batch_size=0), "batch_size")
    error_of(lambda: load_calibration(iter([x[:3], x[3:6, :, :4]]), digits), "item 1", "one shape")
    error_of(lambda: load_calibration(3.5, digits), "float", "pass a path")
    error_of(lambda: load_calibration(DIGITS_CALIB, digits, input_shapes={"pixels": (1, 1, 8, 8)}),
             "unknown input(s) pixels", "inputs are input")
    error_of(lambda: load_calibration(iter([(x[:2], np.arange(2)), x[2:4]]), digits),
             "item 1 of the given iterable has no labels")


def test_errors_images(tmp_path, digits, resnet20, bert, monkeypatch):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    error_of(lambda: load_calibration(tmp_path / "empty", digits, preprocess=""), "no images", "empty")
    _rgb_folder(tmp_path, count=2)
    error_of(lambda: load_calibration(tmp_path / "imgs", resnet20), "needs a declared preprocessing", "--preprocess")
    error_of(lambda: load_calibration(tmp_path / "imgs", bert, preprocess=""), "2 (input_ids, attention_mask)")
    error_of(lambda: load_calibration(tmp_path / "imgs", digits, preprocess=IMAGENET), "3/3 values", "1 channel")
    error_of(lambda: load_calibration(tmp_path / "imgs" / "00.png", resnet20, preprocess=""), "single image")
    error_of(lambda: load_calibration(tmp_path / "imgs", resnet20, preprocess="resize=16x16"),
             "after preprocessing", "[2, 3, 16, 16]", "axis 2 must be 32")
    (tmp_path / "imgs" / "01.png").write_bytes(b"\x89PNG broken")
    error_of(lambda: load_calibration(tmp_path / "imgs", resnet20, preprocess=""), "cannot read image", "01.png")
    monkeypatch.setitem(sys.modules, "PIL", None)  # as if Pillow were not installed
    error_of(lambda: load_calibration(tmp_path / "imgs", resnet20, preprocess=""), "pip install onnxprune[images]")
