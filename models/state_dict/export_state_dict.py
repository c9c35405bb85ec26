"""Fixtures for apply_plan (onnxprune/compiler/state_dict.py) that need no torch to test.

    python models/state_dict/export_state_dict.py

Two small PyTorch models, their state_dicts as .npz (numpy arrays keyed by state_dict
key; apply_plan takes numpy arrays) and their ONNX exports, chosen for how the exporters
rename the weights:
  cnn.dynamo.onnx  conv-BN-ReLU x2 -> pool -> Linear -> ReLU -> Linear, dynamo exporter:
                   BatchNorm fused into the convs (the conv keeps its parameter names, the
                   node gets the BatchNorm's scope), Linear on 2-D input = Gemm(transB=1)
  mlp.onnx         Linear -> 2 pre-norm residual MLP blocks -> Linear on [batch, 4, 12]
                   input, TorchScript exporter: every Linear is MatMul of a transposed
                   initializer (onnx::MatMul_N), the two LayerNorms' identical (initial)
                   parameters are one initializer read through Identity nodes
  mlp.dynamo.onnx  the same, dynamo exporter: MatMul of a pre-transposed constant (val_N),
                   module scopes only in node metadata (pkg.torch.onnx.name_scopes)
  mlp.unfolded.onnx the same, TorchScript with do_constant_folding=False: every Linear is
                   MatMul(x, Transpose(blocks.0.fc1.weight)), the named parameter read
                   through a Transpose node (onnxprune folds it: passes/fold_weight_transposes.py)
Fixed seed, fixed batch 2; outputs checked against PyTorch with onnxruntime. The dynamo
exporter's stack-trace metadata is cut to relative paths (as models/export_zoo.py does).
"""
from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from export_zoo import scrub_paths


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.pool(self.features(x)).flatten(1))))


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, h)
        self.fc2 = nn.Linear(h, d)

    def forward(self, x):
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm(x))))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(12, 16)
        self.blocks = nn.Sequential(Block(16, 48), Block(16, 48))
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.blocks(self.embed(x)))


def _cnn():
    torch.manual_seed(0)
    net = CNN()
    # Non-trivial BatchNorm statistics and affine parameters, or folding them is a no-op
    # and a wrong slice of them would go unnoticed.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, 0, 0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _mlp():
    torch.manual_seed(1)
    return MLP().eval()  # LayerNorms left at their initial (identical) parameters on purpose


def export(net, shape, path, dynamo, fold=True):
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            prog = torch.onnx.export(net, (x,), dynamo=True, external_data=False, input_names=["input"],
                                     output_names=["output"], report=False, verify=False)
            prog.save(path, external_data=False)
            m = onnx.load(path)
            scrub_paths(m)
            onnx.save(m, path)
        else:
            torch.onnx.export(net, (x,), path, dynamo=False, opset_version=17, input_names=["input"],
                              output_names=["output"], do_constant_folding=fold)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = net(x).numpy()
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max() + 1e-6, path


def main():
    for name, net, shape, exports in (("cnn", _cnn(), (3, 8, 8), (("cnn.dynamo.onnx", True),)),
                                      ("mlp", _mlp(), (4, 12), (("mlp.onnx", False), ("mlp.dynamo.onnx", True),
                                                                ("mlp.unfolded.onnx", False)))):
        np.savez(os.path.join(HERE, f"{name}.npz"), **{k: v.numpy() for k, v in net.state_dict().items()})
        for file, dynamo in exports:
            export(net, shape, os.path.join(HERE, file), dynamo, fold="unfolded" not in file)
            print("wrote", file)


if __name__ == "__main__":
    main()
