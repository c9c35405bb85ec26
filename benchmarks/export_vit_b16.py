"""Export a ViT-B/16 (random weights, 86 M parameters) for `benchmarks/html_page.py`.

Run with a PyTorch venv (torch is never in CI's install):
    PYTHONPATH=. /path/to/torch-venv/bin/python benchmarks/export_vit_b16.py /tmp/vit_b16.onnx

The architecture is models/transformers/zoo_transformers.ViT at ViT-B/16's sizes (224
pixels, 16-pixel patches, width 768, 12 heads, MLP 3072, 12 layers, 1000 classes),
exported as the fixtures are (TorchScript exporter, opset 17, dynamic batch).
"""

import sys

import torch

sys.path.insert(0, "models/transformers")
from zoo_transformers import ViT


def main(path: str) -> None:
    torch.manual_seed(0)
    model = ViT(image=224, patch=16, hidden=768, heads=12, mlp=3072, layers=12, num_classes=1000).eval()
    x = torch.randn(1, 3, 224, 224)
    torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17, input_names=["pixel_values"],
                      output_names=["logits"], dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/vit_b16.onnx")
