"""Image folders as calibration data: a declared preprocessing and the decoder that applies it.

Every image goes through the same fixed steps, in this order: decode with Pillow;
convert to 8-bit grayscale ("L") or RGB, whichever the model's channel dim asks for
(alpha is dropped, not composited); resize to (H, W) when it differs; multiply by
`scale`; subtract `mean` and divide by `std` per channel; lay out as CHW or HWC.
No centre crop, no aspect-preserving resize and no EXIF rotation (torchvision's
default loader does none either): prepare images that need those beforehand.

What this module does not do: choose samples, check dtypes or batch anything (that is
`calibration.py`), or guess a normalisation the user did not declare.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from onnxprune.errors import OnnxPruneError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
LAYOUTS = ("NCHW", "NHWC")
_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
_EXAMPLE = "resize=224x224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,layout=NCHW"


@dataclass(frozen=True)
class ImagePreprocess:
    """How raw images become model input: `((pixel * scale) - mean) / std`.

    size: (H, W) to resize to; None takes H and W from the model input's static dims.
    mean, std: one value for every channel, or one per channel.
    scale: applied to the 0..255 pixel values first (1/255 maps them to 0..1).
    layout: "NCHW" or "NHWC", the layout of the model input.
    channels: 1 (grayscale) or 3 (RGB); None takes the model input's channel dim.
    interpolation: "bilinear" (default; Pillow's filter, which antialiases when
    shrinking), "bicubic" or "nearest".
    """

    size: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale: float = 1 / 255
    layout: str = "NCHW"
    channels: int | None = None
    interpolation: str = "bilinear"

    def __post_init__(self):
        if self.size is not None:
            size = tuple(int(d) for d in self.size)
            if len(size) != 2 or any(d <= 0 for d in size):
                raise OnnxPruneError(f"image size must be two positive ints (H, W), got {self.size}")
            object.__setattr__(self, "size", size)
        for field in ("mean", "std"):
            values = getattr(self, field)
            values = (values,) if isinstance(values, (int, float)) else tuple(float(v) for v in values)
            if len(values) not in (1, 3):
                raise OnnxPruneError(f"image {field} needs 1 or 3 values (one per channel), got {len(values)}")
            object.__setattr__(self, field, tuple(float(v) for v in values))
        if any(s == 0 for s in self.std):
            raise OnnxPruneError(f"image std must be non-zero, got {'/'.join(map(str, self.std))}")
        if not float(self.scale) > 0:
            raise OnnxPruneError(f"image scale must be positive, got {self.scale}")
        object.__setattr__(self, "scale", float(self.scale))
        layout = str(self.layout).upper()
        if layout not in LAYOUTS:
            raise OnnxPruneError(f"image layout must be NCHW or NHWC, got '{self.layout}'")
        object.__setattr__(self, "layout", layout)
        if self.channels not in (None, 1, 3):
            raise OnnxPruneError(f"image channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        if self.interpolation not in _INTERPOLATIONS:
            raise OnnxPruneError(
                f"image interpolation must be one of {', '.join(_INTERPOLATIONS)}, got '{self.interpolation}'"
            )


def parse_preprocess(text: str) -> ImagePreprocess:
    """Parse the CLI form into an ImagePreprocess.

    Comma-separated `key=value` pairs, every key optional and at most once:
    `resize=HxW` (or `size=`), `mean=a/b/c`, `std=a/b/c` (one value or three),
    `scale=1/255` (a number or a fraction), `layout=NCHW|NHWC`, `channels=1|3`,
    `interpolation=bilinear|bicubic|nearest`. The empty string gives the defaults. Example:
    `resize=224x224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,layout=NCHW`.
    """
    fields: dict[str, object] = {}
    seen: set[str] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = (s.strip() for s in part.partition("="))
        key = key.lower()
        if not sep or not value:
            raise _bad(text, f"'{part}' is not key=value")
        if key == "size":
            key = "resize"
        if key in seen:
            raise _bad(text, f"'{key}' is given twice")
        seen.add(key)
        if key == "resize":
            dims = value.lower().split("x")
            if len(dims) != 2:
                raise _bad(text, f"resize '{value}' is not HxW")
            fields["size"] = (_number(text, key, dims[0], int), _number(text, key, dims[1], int))
        elif key in ("mean", "std"):
            fields[key] = tuple(_number(text, key, v, float) for v in value.split("/"))
        elif key == "scale":
            fields[key] = _number(text, key, value, lambda s: float(Fraction(s)))
        elif key == "layout":
            fields[key] = value.upper()
        elif key == "channels":
            fields[key] = _number(text, key, value, int)
        elif key == "interpolation":
            fields[key] = value.lower()
        else:
            raise _bad(text, f"unknown key '{key}' (known: resize, mean, std, scale, layout, channels, interpolation)")
    try:
        return ImagePreprocess(**fields)
    except OnnxPruneError as err:
        raise _bad(text, str(err)) from None


def _number(text: str, key: str, value: str, kind):
    try:
        return kind(value.strip())
    except (ValueError, ZeroDivisionError):
        raise _bad(text, f"{key} value '{value}' is not a number") from None


def _bad(text: str, why: str) -> OnnxPruneError:
    return OnnxPruneError(f"bad --preprocess '{text}': {why}; expected e.g. {_EXAMPLE}")


def list_images(folder: str) -> list[str]:
    """Image files under `folder` (recursive), sorted by their path relative to it."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/"))
    if not found:
        raise OnnxPruneError(
            f"no images in folder {folder} (looked for {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)}, recursively): "
            "point at a folder of image files, or pass an .npz"
        )
    return [os.path.join(folder, rel) for rel in sorted(found)]


def load_images(paths: list[str], pre: ImagePreprocess, *, size: tuple[int, int], channels: int) -> np.ndarray:
    """Decode and preprocess `paths` into one float32 array [N, C, H, W] or [N, H, W, C]."""
    try:
        from PIL import Image
    except ImportError:
        raise OnnxPruneError(
            "reading images needs Pillow, which is not installed: pip install onnxprune[images]"
        ) from None
    mode = "L" if channels == 1 else "RGB"
    resample = {
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "nearest": Image.Resampling.NEAREST,
    }[pre.interpolation]
    height, width = size
    mean = np.asarray(pre.mean, dtype=np.float32)
    std = np.asarray(pre.std, dtype=np.float32)
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise OnnxPruneError(
            f"image mean/std have {len(mean)}/{len(std)} values but the model takes {channels} channel(s): "
            f"give 1 or {channels} values each"
        )
    out = np.empty((len(paths), height, width, channels), dtype=np.float32)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image = image.convert(mode)
                if image.size != (width, height):
                    image = image.resize((width, height), resample)
                pixels = np.asarray(image, dtype=np.float32)
        except Exception as err:  # Pillow raises many types for a bad file; all mean "unreadable"
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise OnnxPruneError(
                f"cannot read image {path} ({type(err).__name__}: {first}): remove or replace the file"
            ) from None
        out[i] = pixels.reshape(height, width, channels)
    out *= np.float32(pre.scale)
    out -= mean
    out /= std
    return out if pre.layout == "NHWC" else np.ascontiguousarray(out.transpose(0, 3, 1, 2))
