"""Digits data splits and model builder, importable without side effects.

Used by ``train_digits.py`` and by anything that fine-tunes or rebuilds the digits
ResNets (a fine-tuning hook, an ``apply_plan(state_dict)``)::

    from models.digits.digits_data import load_splits, build_digits_resnet, load_trained
    # (also re-exported: from models.digits.train_digits import load_splits, build_digits_resnet)

    splits = load_splits()                 # {"train"|"calib"|"test": (x float32 [N,1,8,8], y int64 [N])}
    model = build_digits_resnet(56)        # untrained torch.nn.Module (models/zoo.py CifarResNet)
    model = load_trained(56)               # eval() model with digits_resnet56.pt loaded

Importing this module needs only numpy; ``load_splits`` needs scikit-learn; the model
functions import torch (and ``models/zoo.py``) when called. Nothing is trained, written
or put on ``sys.path`` at import time. Works both as ``models.digits.digits_data`` (repo
root on ``sys.path``) and as a plain ``digits_data`` module next to ``train_digits.py``.
"""
from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ZOO_PY = os.path.join(os.path.dirname(HERE), "zoo.py")

SEED = 0
N_TEST = 360
N_CALIB = 256
WIDTHS = (32, 32, 64)
STRIDES = (1, 1, 2)
DEPTHS = (20, 56, 110)  # the committed models


def model_name(depth: int) -> str:
    """File stem of the committed model: digits_resnet (depth 20) or digits_resnet<depth>."""
    return "digits_resnet" if depth == 20 else f"digits_resnet{depth}"


def meta_path(depth: int) -> str:
    return os.path.join(HERE, "digits_meta.json" if depth == 20 else f"{model_name(depth)}_meta.json")


def onnx_path(depth: int) -> str:
    return os.path.join(HERE, f"{model_name(depth)}.onnx")


def pt_path(depth: int) -> str:
    """PyTorch state_dict (torch.save) of the trained model; depths 56 and 110 only."""
    return os.path.join(HERE, f"{model_name(depth)}.pt")


def load_splits(seed: int = SEED):
    """Return {"train", "calib", "test"} -> (x float32 [N,1,8,8] in [0,1], y int64 [N]); deterministic.

    sklearn.datasets.load_digits(), stratified: test 360, calib 256 held out of the rest,
    train 1181. For the default seed, calib/test equal digits_calib.npz / digits_test.npz.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=N_TEST, stratify=y, random_state=seed)
    x_train, x_calib, y_train, y_calib = train_test_split(x_rest, y_rest, test_size=N_CALIB, stratify=y_rest,
                                                          random_state=seed)
    return {"train": (x_train, y_train), "calib": (x_calib, y_calib), "test": (x_test, y_test)}


def load_split_file(split: str):
    """(x, y) from the committed digits_<split>.npz (split: "calib" or "test"); no scikit-learn needed."""
    with np.load(os.path.join(HERE, f"digits_{split}.npz")) as d:
        return d["x"], d["y"]


def _zoo():
    """models/zoo.py as a module: the package import when available, else loaded by file path."""
    try:
        from models import zoo  # repo root on sys.path
        if os.path.abspath(getattr(zoo, "__file__", "")) == os.path.abspath(ZOO_PY):
            return zoo
    except ImportError:
        pass
    name = "_onnxprune_models_zoo"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ZOO_PY)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def build_digits_resnet(depth: int = 20):
    """ResNet-(6n+2) for 1x8x8 digits: stem 1->32, stages 32/32/64 (n blocks each), one downsampling.

    Untrained (PyTorch default init, depends on the torch RNG state); train mode.
    """
    return _zoo().CifarResNet(depth, num_classes=10, widths=WIDTHS, in_channels=1, stem_width=WIDTHS[0],
                              strides=STRIDES)


def load_trained(depth: int, path: str | None = None):
    """build_digits_resnet(depth) with the saved state_dict (default pt_path(depth)) loaded, in eval mode."""
    import torch

    model = build_digits_resnet(depth)
    state = torch.load(path or pt_path(depth), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
