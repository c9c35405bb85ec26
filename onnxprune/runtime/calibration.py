"""Calibration data: the samples the probe runs a model on, checked against its inputs.

`load_calibration` reads one of: an `.npy` file (one array, single-input models); an
`.npz` file (arrays keyed by input name; a single-input model also accepts key `x` or
a lone array; an array `y` becomes `labels`); a folder of images with a declared
`ImagePreprocess`; a dict name -> array; a numpy array (single-input models); or an
iterable of arrays, of dicts name -> array, or of `(features, labels)` pairs.

Samples are rows along axis 0. An array whose rank is the model input's rank is a batch
of samples; one rank lower is a single sample. With `samples=N` and a source holding
more, the N rows are chosen by `np.random.default_rng(seed).permutation` and kept in
source order: the same source, N and seed always give the same samples, in the same
order, and a larger N with the same seed gives a superset. Iterables are read in order
until N samples are in hand (the seed plays no part; no more items are pulled);
`samples=None` takes everything, so never pass an endless generator without N.

Checks, each an OnnxPruneError of one line: static dims of every input must match
(symbolic dims may be anything, but a dim name shared by several inputs must have one
size); every input has the same number of samples; dtypes are cast to the model's only
within a kind (float to float, int/bool to int, with a range check) — int data for a
float input and float data for an int input are refused, since both are usually a
missing preprocessing step or the wrong array.

What this module does not do: run the model, shuffle batches, or preprocess arrays.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from onnxprune.errors import OnnxPruneError
from onnxprune.model_io import graph_inputs, load_model
from onnxprune.runtime.images import (
    IMAGE_EXTENSIONS,
    ImagePreprocess,
    list_images,
    load_images,
    parse_preprocess,
)

__all__ = ["CalibrationData", "ImagePreprocess", "load_calibration", "parse_preprocess"]

LABEL_KEY = "y"
_ALIAS_KEY = "x"  # the key digits_calib.npz and evaluate.py use for a single input


@dataclass
class CalibrationData:
    """Samples for every model input, in the input's dtype, with optional labels.

    `arrays[name]` has the samples along axis 0. `indices` are the rows taken from an
    indexable source (None when everything was taken or the source was an iterable).
    A model whose batch axis is a fixed number B gets batches of exactly B rows.
    """

    arrays: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    batch_size: int = 32
    indices: np.ndarray | None = None
    source: str = ""
    fixed_batch: int | None = field(default=None, repr=False)

    @property
    def inputs(self) -> list[str]:
        return list(self.arrays)

    @property
    def n(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        shapes = ", ".join(f"{name}: {a.dtype}{list(a.shape)}" for name, a in self.arrays.items())
        labelled = "with labels" if self.labels is not None else "no labels"
        return f"CalibrationData({self.n} samples from {self.source or '?'}; {shapes}; {labelled})"

    def feeds(self) -> dict[str, np.ndarray]:
        """Every sample at once, as one feed dict."""
        return dict(self.arrays)

    def batches(self, batch_size: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Feed dicts of at most `batch_size` rows (default: the one given at load), in order."""
        size = self.fixed_batch or (batch_size if batch_size is not None else self.batch_size)
        if size <= 0:
            raise OnnxPruneError(f"batch_size must be positive, got {size}")
        for start in range(0, self.n, size):
            yield {name: a[start:start + size] for name, a in self.arrays.items()}


def load_calibration(
    source,
    model: ir.Model | str | os.PathLike,
    *,
    samples: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    preprocess: ImagePreprocess | str | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> CalibrationData:
    """Read calibration samples for `model` from `source` (see the module docstring).

    `input_shapes` (name -> dims, as for --input-shape) pins symbolic dims other than
    the batch axis: the data must then have those sizes, and an image folder takes its
    H and W from them. `preprocess` is required for an image folder and may be given in
    its CLI form (see `parse_preprocess`).
    """
    if not isinstance(model, ir.Model):
        model = load_model(model)
    if samples is not None:
        if isinstance(samples, bool) or int(samples) != samples or samples <= 0:
            raise OnnxPruneError(f"samples must be a positive number, got {samples}: pass samples>=1, or None for all")
        samples = int(samples)
    if int(batch_size) <= 0:
        raise OnnxPruneError(f"batch_size must be positive, got {batch_size}")
    if isinstance(preprocess, str):
        preprocess = parse_preprocess(preprocess)
    specs = _input_specs(model, input_shapes)

    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        label = path
        if os.path.isdir(path):
            arrays, indices = _from_images(path, specs, preprocess, samples, seed)
            labels = None
        else:
            arrays, labels = _read_file(path, specs)
            arrays, labels, indices = _select(arrays, labels, specs, samples, seed, label)
    elif isinstance(source, np.ndarray):
        label = "the given array"
        if len(specs) != 1:
            raise OnnxPruneError(
                f"{label} feeds one input but the model has {len(specs)} ({', '.join(specs)}): "
                "pass a dict name->array"
            )
        arrays, labels = {next(iter(specs)): source}, None
        arrays, labels, indices = _select(arrays, labels, specs, samples, seed, label)
    elif isinstance(source, Mapping):
        label = "the given dict"
        arrays = {str(k): np.asarray(v) for k, v in source.items()}
        labels = arrays.pop(LABEL_KEY, None) if LABEL_KEY not in specs else None
        arrays = _match_keys(arrays, specs, label)
        arrays, labels, indices = _select(arrays, labels, specs, samples, seed, label)
    elif isinstance(source, Iterable) and not isinstance(source, (bytes, bytearray)):
        label = "the given iterable"
        arrays, labels = _from_iterable(source, specs, samples)
        indices = None
    else:
        raise OnnxPruneError(
            f"cannot read calibration data from a {type(source).__name__}: "
            "pass a path (.npy, .npz or an image folder), "
            "a dict name->array, or an iterable of arrays or dicts"
        )

    arrays = {name: _cast(specs[name], a, label) for name, a in arrays.items()}
    fixed = specs[next(iter(specs))].batch
    n = len(next(iter(arrays.values())))
    if fixed is not None and n % fixed:
        raise OnnxPruneError(
            f"the model fixes the batch axis at {fixed} but {label} gives {n} samples: "
            f"pass samples as a multiple of {fixed}"
        )
    return CalibrationData(
        arrays, labels=labels, batch_size=int(batch_size), indices=indices, source=label, fixed_batch=fixed
    )


# --------------------------------------------------------------------------- what the model wants


@dataclass
class _Spec:
    """One graph input: name, numpy dtype, and per-axis expectations after the batch axis."""

    name: str
    dtype: np.dtype | None
    rank: int | None  # None: the model declares no shape
    dims: list  # axes 1..: int (fixed), str (named symbolic), None (anything)
    batch: int | None  # axis 0 when the model fixes it

    def shape_text(self) -> str:
        if self.rank is None:
            return "(any shape)"
        dims = ["batch" if self.batch is None else str(self.batch)]
        dims += [str(d) if d is not None else "?" for d in self.dims]
        return "[" + ",".join(dims) + "]"


def _input_specs(model: ir.Model, overrides: Mapping[str, tuple[int, ...]] | None) -> dict[str, _Spec]:
    inputs = graph_inputs(model)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {v.name for v in inputs})
    if unknown:
        raise OnnxPruneError(
            f"input_shapes names unknown input(s) {', '.join(unknown)}: the model's inputs are "
            f"{', '.join(v.name for v in inputs)}"
        )
    specs = {}
    for value in inputs:
        dtype = np.dtype(value.dtype.numpy()) if value.dtype is not None else None
        shape = value.shape
        if shape is None:
            rank, dims, batch = None, [], None
        else:
            rank = len(shape)
            dims = [d if isinstance(d, int) else (d.value or None) for d in list(shape)[1:]]
            batch = shape[0] if rank and isinstance(shape[0], int) else None
        override = overrides.get(value.name)
        if override is not None:
            override = tuple(int(d) for d in override)
            if rank is not None and len(override) != rank:
                raise OnnxPruneError(
                    f"input_shapes for '{value.name}' has rank {len(override)} but the model declares rank {rank}"
                )
            rank = len(override)
            merged = []
            for axis, want in enumerate(override[1:], start=1):
                have = dims[axis - 1] if axis - 1 < len(dims) else None
                if isinstance(have, int) and have != want:
                    raise OnnxPruneError(
                        f"input_shapes for '{value.name}' sets axis {axis} to {want} but the model fixes it at {have}"
                    )
                merged.append(want)
            dims = merged
        specs[value.name] = _Spec(value.name, dtype, rank, dims, batch)
    return specs


# --------------------------------------------------------------------------- sources


def _read_file(path: str, specs: dict[str, _Spec]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    if not os.path.exists(path):
        raise OnnxPruneError(f"calibration data {path} does not exist: check the path")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        if len(specs) != 1:
            raise OnnxPruneError(
                f"{path} is an .npy (one array) but the model has {len(specs)} inputs ({', '.join(specs)}): "
                "save an .npz with one array per input name"
            )
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)  # rows are read only when chosen
        except (OSError, ValueError) as err:
            raise OnnxPruneError(f"cannot read {path} as .npy ({_first_line(err)}): save it with numpy.save") from None
        return {next(iter(specs)): array}, None
    if ext == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as err:
            raise OnnxPruneError(f"cannot read {path} as .npz ({_first_line(err)}): save it with numpy.savez") from None
        labels = arrays.pop(LABEL_KEY, None) if LABEL_KEY not in specs else None
        return _match_keys(arrays, specs, path), labels
    if ext in IMAGE_EXTENSIONS:
        raise OnnxPruneError(f"{path} is a single image: pass the folder that holds the calibration images")
    raise OnnxPruneError(
        f"calibration data {path} has unknown extension '{ext}': pass an .npy, an .npz or a folder of "
        f"{'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} images"
    )


def _match_keys(arrays: dict[str, np.ndarray], specs: dict[str, _Spec], label: str) -> dict[str, np.ndarray]:
    """Arrays per model input: by name; a single-input model also takes key `x` or a lone array."""
    if len(specs) == 1:
        (name,) = specs
        for key in (name, _ALIAS_KEY):
            if key in arrays:
                return {name: arrays[key]}
        if len(arrays) == 1:
            return {name: next(iter(arrays.values()))}
    missing = [name for name in specs if name not in arrays]
    if missing:
        keys = ", ".join(sorted(arrays)) or "none"
        raise OnnxPruneError(
            f"{label} has no array for model input(s) {', '.join(missing)}: it has keys {keys}; "
            f"the model wants {', '.join(specs)}"
        )
    return {name: arrays[name] for name in specs}


def _from_images(folder, specs, pre, samples, seed) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    if pre is None:
        raise OnnxPruneError(
            f"{folder} is a folder of images, which needs a declared preprocessing: pass preprocess= "
            "(CLI: --preprocess 'resize=224x224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,layout=NCHW')"
        )
    if len(specs) != 1:
        raise OnnxPruneError(
            f"an image folder feeds one input but the model has {len(specs)} ({', '.join(specs)}): "
            "pass an .npz or a dict with one array per input"
        )
    spec = next(iter(specs.values()))
    if spec.rank not in (None, 4):
        raise OnnxPruneError(
            f"input '{spec.name}' has rank {spec.rank} {spec.shape_text()}, not an image batch (rank 4): "
            "pass an .npy or .npz instead of an image folder"
        )
    c_axis, h_axis, w_axis = (0, 1, 2) if pre.layout == "NCHW" else (2, 0, 1)  # within spec.dims
    dim = (lambda axis: spec.dims[axis]) if spec.rank else (lambda axis: None)
    channels = pre.channels or dim(c_axis)
    if not isinstance(channels, int):
        raise OnnxPruneError(
            f"input '{spec.name}' {spec.shape_text()} has no fixed channel dim for layout {pre.layout}: "
            "set channels=1 or 3 in the preprocessing"
        )
    if channels not in (1, 3):
        raise OnnxPruneError(
            f"input '{spec.name}' {spec.shape_text()} has {channels} channels at the {pre.layout} channel axis: "
            "images give 1 or 3; check the layout (NCHW or NHWC)"
        )
    size = pre.size or (dim(h_axis), dim(w_axis))
    if not all(isinstance(d, int) for d in size):
        raise OnnxPruneError(
            f"input '{spec.name}' {spec.shape_text()} has no fixed height/width: set resize=HxW in the preprocessing"
        )
    paths = list_images(folder)
    indices = _choose(len(paths), samples, seed, folder)
    chosen = paths if indices is None else [paths[i] for i in indices]
    array = load_images(chosen, pre, size=size, channels=channels)
    _check_shape(spec, array, f"{folder} (after preprocessing)")
    return {spec.name: array}, indices


def _from_iterable(source, specs, samples) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    parts: dict[str, list[np.ndarray]] = {name: [] for name in specs}
    label_parts: list[np.ndarray] = []
    have = 0
    labelled = None  # whether items carry labels, fixed by the first item
    for k, item in enumerate(source):
        labels = None
        # (features, labels), as datasets and torch DataLoaders (a list there) yield them
        if _is_pair(item):
            item, labels = item
        where = f"item {k} of the given iterable"
        if isinstance(item, Mapping):
            arrays = {str(key): np.asarray(v) for key, v in item.items()}
            if LABEL_KEY not in specs and LABEL_KEY in arrays:
                labels = arrays.pop(LABEL_KEY)
            arrays = _match_keys(arrays, specs, where)
        elif len(specs) == 1:
            arrays = {next(iter(specs)): np.asarray(item)}
        else:
            raise OnnxPruneError(
                f"{where} is a {type(item).__name__} but the model has inputs {', '.join(specs)}: "
                "yield dicts name->array"
            )
        arrays = {name: _as_batch(specs[name], a, where) for name, a in arrays.items()}
        rows = _common_count(arrays, where)
        if labelled is None:
            labelled = labels is not None
        if labelled != (labels is not None):
            raise OnnxPruneError(
                f"{where} {'has no' if labelled else 'has'} labels but item 0 {'had' if labelled else 'had none'}: "
                "give labels with every item or with none"
            )
        if labelled:
            labels = np.asarray(labels).reshape(-1)
            if len(labels) != rows:
                raise OnnxPruneError(f"{where} has {rows} samples but {len(labels)} labels")
            label_parts.append(labels)
        for name, a in arrays.items():
            if parts[name] and parts[name][0].shape[1:] != a.shape[1:]:
                raise OnnxPruneError(
                    f"{where} has '{name}' samples of shape {list(a.shape[1:])} but earlier items had "
                    f"{list(parts[name][0].shape[1:])}: give every sample one shape (pad sequences to one length)"
                )
            parts[name].append(a)
        have += rows
        if samples is not None and have >= samples:
            break
    if have == 0:
        raise OnnxPruneError("the given iterable yielded no samples: pass a non-empty source")
    if samples is not None and have < samples:
        raise OnnxPruneError(
            f"the given iterable yielded only {have} samples but samples={samples} was asked: "
            f"pass samples<={have}, or None for all"
        )
    stop = samples if samples is not None else have
    arrays = {name: np.concatenate(p)[:stop] for name, p in parts.items()}
    labels = np.concatenate(label_parts)[:stop] if label_parts else None
    for name, a in arrays.items():
        _check_shape(specs[name], a, "the given iterable")
    _check_shared_dims(specs, arrays, "the given iterable")
    return arrays, labels


def _is_pair(item) -> bool:
    """Whether an item is (features, labels): a 2-sequence whose first part is a dict or an array (not a scalar)."""
    return (
        isinstance(item, (tuple, list))
        and len(item) == 2
        and (isinstance(item[0], Mapping) or getattr(item[0], "ndim", 0) >= 1)
    )


# --------------------------------------------------------------------------- selection and checks


def _select(arrays, labels, specs, samples, seed, label):
    """Validate shapes on metadata, then read only the chosen rows."""
    arrays = {name: _as_batch(specs[name], a, label) for name, a in arrays.items()}
    total = _common_count(arrays, label)
    for name, a in arrays.items():
        _check_shape(specs[name], a, label)
    _check_shared_dims(specs, arrays, label)
    if labels is not None:
        labels = np.asarray(labels)
        if len(labels) != total:
            raise OnnxPruneError(f"{label} has {total} samples but {len(labels)} labels in '{LABEL_KEY}'")
    indices = _choose(total, samples, seed, label)
    if indices is None:  # np.array copies: a memory-mapped .npy must not stay tied to its file
        return {name: np.array(a) for name, a in arrays.items()}, labels, None
    arrays = {name: np.array(a[indices]) for name, a in arrays.items()}
    return arrays, (labels[indices] if labels is not None else None), indices


def _choose(total: int, samples: int | None, seed: int, label: str) -> np.ndarray | None:
    """Rows to take: None for all; else `samples` rows from a seeded permutation, in source order."""
    if total == 0:
        raise OnnxPruneError(f"{label} holds no samples: pass a non-empty source")
    if samples is None or samples == total:
        return None
    if samples > total:
        raise OnnxPruneError(
            f"{label} has only {total} samples but samples={samples} was asked: pass samples<={total}, or None for all"
        )
    return np.sort(np.random.default_rng(seed).permutation(total)[:samples])


def _as_batch(spec: _Spec, array, where: str) -> np.ndarray:
    """A batch along axis 0: arrays one rank below the model input are a single sample."""
    if not isinstance(array, np.ndarray):
        array = np.asarray(array)
    if spec.rank is None or array.ndim == spec.rank:
        if array.ndim == 0:
            raise OnnxPruneError(f"{where} gives a scalar for '{spec.name}': give arrays with samples along axis 0")
        return array
    if array.ndim == spec.rank - 1:
        return array[None]
    raise OnnxPruneError(
        f"{where} gives '{spec.name}' of shape {list(array.shape)} (rank {array.ndim}) but the model expects "
        f"{spec.shape_text()} (rank {spec.rank}, or {spec.rank - 1} for one sample)"
    )


def _common_count(arrays: dict[str, np.ndarray], where: str) -> int:
    counts = {name: len(a) for name, a in arrays.items()}
    if len(set(counts.values())) > 1:
        text = ", ".join(f"{name}: {c}" for name, c in counts.items())
        raise OnnxPruneError(f"{where} has different sample counts per input ({text}): give every input the same count")
    return next(iter(counts.values()))


def _check_shape(spec: _Spec, array: np.ndarray, where: str) -> None:
    for axis, want in enumerate(spec.dims, start=1):
        if isinstance(want, int) and array.shape[axis] != want:
            raise OnnxPruneError(
                f"{where} gives '{spec.name}' of shape {list(array.shape)} but the model expects "
                f"{spec.shape_text()} (axis {axis} must be {want})"
            )


def _check_shared_dims(specs: dict[str, _Spec], arrays: dict[str, np.ndarray], where: str) -> None:
    """A symbolic dim named in several inputs (e.g. 'seq') must have one size in the data."""
    seen: dict[str, tuple[str, int]] = {}
    for name, a in arrays.items():
        for axis, dim in enumerate(specs[name].dims, start=1):
            if not isinstance(dim, str):
                continue
            first = seen.setdefault(dim, (name, a.shape[axis]))
            if first[1] != a.shape[axis]:
                raise OnnxPruneError(
                    f"{where}: dim '{dim}' is {first[1]} in '{first[0]}' but {a.shape[axis]} in '{name}': "
                    "the model needs one size for it in every input"
                )


def _cast(spec: _Spec, array: np.ndarray, where: str) -> np.ndarray:
    """`array` in the model input's dtype; refuses casts across kinds and out-of-range values."""
    want = spec.dtype
    if want is None or array.dtype == want:
        return np.ascontiguousarray(array)
    have_kind, want_kind = _kind(array.dtype), _kind(want)
    problem = None
    if have_kind != want_kind and not (have_kind == "bool" and want_kind == "int"):
        problem = _KIND_ADVICE.get((have_kind, want_kind), "convert it to the model's dtype first")
    elif want_kind == "int" and array.size:
        info = np.iinfo(want)
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            problem = f"its values span {low}..{high}, outside {want}"
    if problem is None:
        with np.errstate(over="ignore"):  # overflow is reported below, as an error
            out = np.ascontiguousarray(array.astype(want))
        if want_kind == "float" and not np.isfinite(out.astype(np.float32)).all() and np.isfinite(array).all():
            problem = f"its values overflow {want}"
        else:
            return out
    raise OnnxPruneError(
        f"{where} gives '{spec.name}' as {array.dtype} but the model wants {want}: {problem}"
    )


_KIND_ADVICE = {
    ("int", "float"): "scale and convert it yourself (e.g. x.astype(np.float32) / 255 for pixels), "
    "or use an image folder with a preprocessing",
    ("bool", "float"): "convert it yourself (x.astype(np.float32))",
    ("float", "int"): "float data for an integer input (token ids? indices?) is refused; pass integer arrays",
    ("float", "bool"): "pass a boolean array",
    ("int", "bool"): "pass a boolean array",
}


def _kind(dtype: np.dtype) -> str:
    try:
        data_type = ir.DataType.from_numpy(np.dtype(dtype))
    except Exception:  # strings, objects, structured dtypes: no ONNX tensor type fits
        return dtype.kind
    if data_type == ir.DataType.BOOL:
        return "bool"
    if data_type.is_floating_point():
        return "float"
    if data_type.is_integer():
        return "int"
    return dtype.kind


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


# --------------------------------------------------------------------------- data-free

SYNTHETIC_SAMPLES = 256  # 64 were as good on the digits CNN, but MiniLM (16 tokens a sample, 1536-wide MLP) then fell to cosine 0.29
SYNTHETIC_BYTES = 64 << 20  # at most this much synthesized input (fewer samples for large inputs)


def synthetic_calibration(model: ir.Model, shapes: Mapping[str, tuple[int, ...]], *, seed: int = 0) -> CalibrationData:
    """Inputs synthesized for data-free recovery (no calibration data given): floats
    ~ N(0, 1), integer inputs that index a constant table (token ids into an embedding)
    uniform over its rows, integer masks (a name with "mask") all ones (nothing padded),
    other integers in [0, 10), bools coin flips; up to 256 samples, fewer when one sample
    is large (64 MiB in all). A model whose batch axis is a fixed number B gets a
    multiple of B."""
    from onnxprune.model_io import make_sample_inputs

    inputs = graph_inputs(model)
    per_sample = sum(int(np.prod(shapes[v.name][1:], dtype=np.int64)) * 4 for v in inputs) or 1
    n = int(max(8, min(SYNTHETIC_SAMPLES, SYNTHETIC_BYTES // per_sample)))
    declared = {v.name: v.shape[0] if v.shape is not None and len(v.shape) and isinstance(v.shape[0], int) else None
                for v in inputs}
    fixed = next((b for b in declared.values() if b), None)
    if fixed:
        n = max(fixed, n - n % fixed)
    feeds = make_sample_inputs(model, shapes, seed=seed, batch=n)
    rows = _table_rows(model)
    rng = np.random.default_rng(seed)
    for name, array in feeds.items():
        if array.dtype.kind in "iu" and name in rows:
            feeds[name] = rng.integers(0, rows[name], size=array.shape).astype(array.dtype)
        elif array.dtype.kind in "iu" and "mask" in name.lower():
            feeds[name] = np.ones_like(array)
    return CalibrationData(feeds, batch_size=32, source="synthesized inputs", fixed_batch=fixed)


def _table_rows(model: ir.Model) -> dict[str, int]:
    """Graph inputs used as indices into a constant table (Gather axis 0, or a fused
    embedding), with the table's row count (the smallest, if several)."""
    out: dict[str, int] = {}
    names = {v.name for v in graph_inputs(model)}
    for node in model.graph:
        pairs = []
        if node.op_type == "Gather" and len(node.inputs) == 2 and node.attributes.get_int("axis", 0) == 0:
            pairs = [(node.inputs[1], node.inputs[0])]
        elif node.op_type == "EmbedLayerNormalization" and len(node.inputs) > 2:
            pairs = [(node.inputs[0], node.inputs[2])]
        for index, table in pairs:
            if index is None or table is None or index.name not in names:
                continue
            const = table.const_value
            if const is not None and len(const.shape) >= 1:
                rows = int(const.shape[0])
                out[index.name] = min(rows, out.get(index.name, rows))
    return out
