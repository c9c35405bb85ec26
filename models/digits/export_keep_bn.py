"""Export the trained digits ResNet-56 with its BatchNorms kept (as TorchScript does with
constant folding off, and as paddle2onnx always does), for data-free recovery from
BatchNorm statistics (benchmarks/recovery_batchnorm.py):

    pip install torch==2.13.0 && python models/digits/export_keep_bn.py

Writes digits_resnet56_bn.onnx next to this file: the weights of digits_resnet56.pt,
TorchScript exporter, opset 17, do_constant_folding=False and training=PRESERVE (the
model is in eval mode: BatchNormalization in inference mode, 56 of them), dynamic batch,
input "input" [N,1,8,8], output "logits" [N,10]. Its test accuracy equals the folded
export's (99.17 %).
"""
from __future__ import annotations

import os
import sys
import warnings

import onnx
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from models.digits.digits_data import load_trained


def main() -> int:
    model = load_trained(56)
    path = os.path.join(HERE, "digits_resnet56_bn.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 1, 8, 8),), path, dynamo=False, opset_version=17,
                          do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    print(f"{path}: {ops.count('BatchNormalization')} BatchNormalization, {ops.count('Conv')} Conv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
