"""Tiny detectors with their decode heads in the graph, exported as people export them.

    python models/detection/export_yolo.py

Written in plain PyTorch (no ultralytics, no torchvision), random weights (seeded, BN
statistics calibrated as in ../zoo.py), input `images` 1x3x64x64 (batch fixed at 1, no
dynamic axes), output `output0`:

  yolov8n_tiny[.dynamo].onnx   YOLOv8-style: Conv-BN-SiLU + C2f backbone with SPPF, PAN neck
      (nearest Upsample + Concat, downsampling convs + Concat), the anchor-free Detect head on
      strides 8/16/32, widths P3/P4/P5 24/32/48 (per scale a box branch to 4*reg_max=64 channels and a class branch to
      nc=8, concatenated), then the decoder inside the graph: view+Concat of the scales, Split
      box/cls, DFL (softmax over 16 bins, 1x1 conv with fixed weights arange(16)), make_anchors,
      dist2bbox (xywh) * strides, Sigmoid on classes, Concat -> [1, 4+nc, 84].
  yolov5n_tiny[.dynamo].onnx   YOLOv5-style: Conv-BN-SiLU + C3 backbone with SPPF, PAN neck,
      anchor-based Detect (3 anchors per scale, yolov5's defaults x0.1): per scale a 1x1 conv to na*(5+nc), view [b, na, 5+nc, h, w],
      permute, Sigmoid, grid/anchor decode, view and Concat -> [1, na*84, 5+nc].
  det_calib.npy   32 seeded random float32 samples [32, 3, 64, 64]

TorchScript files: opset 17; dynamo files: the exporter's default opset. Each passes
onnx.checker (full_check=True), is under 2 MB, and ONNX Runtime matches torch with
max|ort - torch| < 1e-4 * max(1, max|torch|) on 3 seeded inputs: the scores (sigmoids)
match to < 1e-4 absolute; boxes are in pixels (up to ~500), where float32 itself is ~5e-4
off (torch fp32 vs fp64, recorded per file), so they are held to 1e-4 relative to the
output's scale. MANIFEST.json lists them.
"""
from __future__ import annotations

import math
import os
import sys
import traceback

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # models/
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fixed_batch"))
import zoo  # noqa: E402
from zoo import C2f, ConvBNSiLU, SPPF  # noqa: E402
import export_fixed as ef  # noqa: E402  (export/verify/describe helpers)

SHAPE = (3, 64, 64)
NC = 8


# ------------------------------------------------------------------ YOLOv8
def make_anchors(feats, strides, offset=0.5):
    """ultralytics.utils.tal.make_anchors: cell centres (x, y) and per-anchor stride."""
    points, stride_t = [], []
    dtype, device = feats[0].dtype, feats[0].device
    for f, s in zip(feats, strides):
        _, _, h, w = f.shape
        sx = torch.arange(end=w, device=device, dtype=dtype) + offset
        sy = torch.arange(end=h, device=device, dtype=dtype) + offset
        sy, sx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((sx, sy), -1).view(-1, 2))
        stride_t.append(torch.full((h * w, 1), s, dtype=dtype, device=device))
    return torch.cat(points), torch.cat(stride_t)


def dist2bbox(distance, anchor_points, xywh=True, dim=-1):
    lt, rb = distance.chunk(2, dim)
    x1y1 = anchor_points - lt
    x2y2 = anchor_points + rb
    if xywh:
        return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), dim)
    return torch.cat((x1y1, x2y2), dim)


class DFL(nn.Module):
    """Distribution focal loss integral: softmax over reg_max bins, 1x1 conv with weights arange(reg_max)."""

    def __init__(self, c1=16):
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(c1, dtype=torch.float).view(1, c1, 1, 1)
        self.c1 = c1

    def forward(self, x):
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.c1, a).transpose(2, 1).softmax(1)).view(b, 4, a)


class DetectV8(nn.Module):
    def __init__(self, nc=NC, ch=(), strides=(8, 16, 32), reg_max=16):
        super().__init__()
        self.nc, self.reg_max, self.no = nc, reg_max, nc + 4 * reg_max
        self.strides = strides
        c2, c3 = max(16, ch[0] // 4, reg_max * 4), max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(nn.Sequential(ConvBNSiLU(x, c2, 3), ConvBNSiLU(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1))
                                 for x in ch)
        self.cv3 = nn.ModuleList(nn.Sequential(ConvBNSiLU(x, c3, 3), ConvBNSiLU(c3, c3, 3), nn.Conv2d(c3, nc, 1))
                                 for x in ch)
        self.dfl = DFL(reg_max)
        for a, b, s in zip(self.cv2, self.cv3, strides):  # ultralytics Detect.bias_init (640 px images)
            a[-1].bias.data[:] = 1.0
            b[-1].bias.data[:nc] = math.log(5 / nc / (640 / s) ** 2)

    def forward(self, x):
        x = [torch.cat((self.cv2[i](xi), self.cv3[i](xi)), 1) for i, xi in enumerate(x)]
        b = x[0].shape[0]
        anchors, strides = (t.transpose(0, 1) for t in make_anchors(x, self.strides, 0.5))
        x_cat = torch.cat([xi.view(b, self.no, -1) for xi in x], 2)
        box, cls = x_cat.split((self.reg_max * 4, self.nc), 1)
        dbox = dist2bbox(self.dfl(box), anchors.unsqueeze(0), xywh=True, dim=1) * strides
        return torch.cat((dbox, cls.sigmoid()), 1)


class YoloV8Tiny(nn.Module):
    """yolov8n layout at reduced width: P3/8 (24), P4/16 (32), P5/32 (48); 64x64 in -> 8x8, 4x4, 2x2.

    The Detect box branch keeps yolov8n's width (max(16, c3 // 4, 4 * reg_max) = 64), so the
    head holds most of the weights, as in yolov8n."""

    def __init__(self, nc=NC, w=(16, 24, 24, 32, 48)):
        super().__init__()
        c0, c1, c3, c4, c5 = w
        self.stem = nn.Sequential(ConvBNSiLU(3, c0, 3, 2), ConvBNSiLU(c0, c1, 3, 2), C2f(c1, c1, 1, True))
        self.p3 = nn.Sequential(ConvBNSiLU(c1, c3, 3, 2), C2f(c3, c3, 2, True))
        self.p4 = nn.Sequential(ConvBNSiLU(c3, c4, 3, 2), C2f(c4, c4, 2, True, use_split=True))
        self.p5 = nn.Sequential(ConvBNSiLU(c4, c5, 3, 2), C2f(c5, c5, 1, True), SPPF(c5, c5))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.td4 = C2f(c5 + c4, c4, 1, False)
        self.td3 = C2f(c4 + c3, c3, 1, False)
        self.down3 = ConvBNSiLU(c3, c3, 3, 2)
        self.bu4 = C2f(c3 + c4, c4, 1, False)
        self.down4 = ConvBNSiLU(c4, c4, 3, 2)
        self.bu5 = C2f(c4 + c5, c5, 1, False)
        self.detect = DetectV8(nc, (c3, c4, c5))

    def forward(self, x):
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        p5 = self.p5(p4)
        n4 = self.td4(torch.cat([self.up(p5), p4], 1))
        o3 = self.td3(torch.cat([self.up(n4), p3], 1))
        o4 = self.bu4(torch.cat([self.down3(o3), n4], 1))
        o5 = self.bu5(torch.cat([self.down4(o4), p5], 1))
        return self.detect([o3, o4, o5])


# ------------------------------------------------------------------ YOLOv5
class Conv(nn.Module):
    """YOLOv5 Conv with explicit padding (the 6x6/s2/p2 stem of v6.0+)."""

    def __init__(self, c1, c2, k=1, s=1, p=None):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class V5Bottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True, e=1.0):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1)
        self.cv2 = Conv(c_, c2, 3)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with 3 convs: cv3(cat(m(cv1(x)), cv2(x)))."""

    def __init__(self, c1, c2, n=1, shortcut=True, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1)
        self.cv2 = Conv(c1, c_, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(V5Bottleneck(c_, c_, shortcut) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class DetectV5(nn.Module):
    # yolov5's default anchors (pixels at 640) scaled by 0.1 for 64x64 images, as autoanchor would
    # shrink them; at full size box widths reach ~1500 px and float32 rounding alone exceeds 1e-4.
    ANCHORS = ((1.0, 1.3, 1.6, 3.0, 3.3, 2.3), (3.0, 6.1, 6.2, 4.5, 5.9, 11.9), (11.6, 9.0, 15.6, 19.8, 37.3, 32.6))

    def __init__(self, nc=NC, ch=(), strides=(8, 16, 32)):
        super().__init__()
        self.nc, self.no, self.na = nc, nc + 5, len(self.ANCHORS[0]) // 2
        self.strides = strides
        self.register_buffer("anchors", torch.tensor(self.ANCHORS, dtype=torch.float).view(len(strides), -1, 2))
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        for mi, s in zip(self.m, strides):  # yolov5 Model._initialize_biases
            b = mi.bias.view(self.na, -1)
            b.data[:, 4] += math.log(8 / (640 / s) ** 2)
            b.data[:, 5:] += math.log(0.6 / (nc - 0.99999))

    def _make_grid(self, nx, ny, i):
        d, t = self.anchors.device, self.anchors.dtype
        y, x = torch.arange(ny, device=d, dtype=t), torch.arange(nx, device=d, dtype=t)
        yv, xv = torch.meshgrid(y, x, indexing="ij")
        grid = torch.stack((xv, yv), 2).expand(1, self.na, ny, nx, 2) - 0.5
        anchor_grid = self.anchors[i].view(1, self.na, 1, 1, 2).expand(1, self.na, ny, nx, 2)
        return grid, anchor_grid

    def forward(self, x):
        z = []
        for i, xi in enumerate(x):
            xi = self.m[i](xi)
            bs, _, ny, nx = xi.shape
            xi = xi.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            grid, anchor_grid = self._make_grid(nx, ny, i)
            xy, wh, conf = xi.sigmoid().split((2, 2, self.nc + 1), 4)
            xy = (xy * 2 + grid) * self.strides[i]
            wh = (wh * 2) ** 2 * anchor_grid
            z.append(torch.cat((xy, wh, conf), 4).view(bs, self.na * nx * ny, self.no))
        return torch.cat(z, 1)


class YoloV5Tiny(nn.Module):
    """yolov5n layout at reduced width; head as in yolov5s.yaml (1x1 lateral convs, C3 without shortcut)."""

    def __init__(self, nc=NC, w=(16, 32, 32, 48, 64)):
        super().__init__()
        c0, c1, c3, c4, c5 = w
        self.stem = nn.Sequential(Conv(3, c0, 6, 2, 2), Conv(c0, c1, 3, 2), C3(c1, c1, 1))
        self.p3 = nn.Sequential(Conv(c1, c3, 3, 2), C3(c3, c3, 2))
        self.p4 = nn.Sequential(Conv(c3, c4, 3, 2), C3(c4, c4, 2))
        self.p5 = nn.Sequential(Conv(c4, c5, 3, 2), C3(c5, c5, 1), SPPF(c5, c5))
        self.lat5 = Conv(c5, c4, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.td4 = C3(2 * c4, c4, 1, False)
        self.lat4 = Conv(c4, c3, 1)
        self.td3 = C3(2 * c3, c3, 1, False)
        self.down3 = Conv(c3, c3, 3, 2)
        self.bu4 = C3(2 * c3, c4, 1, False)
        self.down4 = Conv(c4, c4, 3, 2)
        self.bu5 = C3(2 * c4, c5, 1, False)
        self.detect = DetectV5(nc, (c3, c4, c5))

    def forward(self, x):
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        p5 = self.p5(p4)
        l5 = self.lat5(p5)
        l4 = self.lat4(self.td4(torch.cat([self.up(l5), p4], 1)))
        o3 = self.td3(torch.cat([self.up(l4), p3], 1))
        o4 = self.bu4(torch.cat([self.down3(o3), l4], 1))
        o5 = self.bu5(torch.cat([self.down4(o4), l5], 1))
        return self.detect([o3, o4, o5])


MODELS = {"yolov8n_tiny": YoloV8Tiny, "yolov5n_tiny": YoloV5Tiny}


def build(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(zoo.SEED)
    model = MODELS[name]()
    g = torch.Generator().manual_seed(zoo.SEED + 1)
    zoo._randomise_norms(model, g)
    zoo._calibrate_bn(model, SHAPE, g)
    return model.eval(), SHAPE


def split_errors(name, path) -> dict:
    """max|ort - torch| on boxes (pixels) and on scores separately, and the float32 floor:
    max|torch fp32 - torch fp64| on the same input."""
    model, shape = build(name)
    x = torch.randn((1, *shape), generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        ref = model(x).numpy()
        ref64 = model.double()(x.double()).numpy()
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    box = (slice(None), slice(0, 4)) if name.startswith("yolov8") else (Ellipsis, slice(0, 4))
    score = (slice(None), slice(4, None)) if name.startswith("yolov8") else (Ellipsis, slice(4, None))

    def mx(a):
        return float(f"{float(np.abs(a).max()):.3e}")
    return {"max_abs_box_px": mx(ref[box]), "max_abs_diff_box": mx(got[box] - ref[box]),
            "max_abs_diff_scores": mx(got[score] - ref[score]),
            "torch_fp32_vs_fp64_box": mx(ref[box] - ref64[box]),
            "torch_fp32_vs_fp64_scores": mx(ref[score] - ref64[score])}


def main() -> int:
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    ef.IN_NAME, ef.OUT_NAME = "images", "output0"
    files, failures, status = [], {}, 0
    for name in MODELS:
        for dynamo in (False, True):
            fname = f"{name}{'.dynamo' if dynamo else ''}.onnx"
            path = os.path.join(HERE, fname)
            try:
                model, shape = build(name)
                torch.manual_seed(0)
                ef.export(model, torch.randn(1, *shape), path, dynamo)
                model, shape = build(name)
                err = ef.verify(model, shape, 1, path, scale_relative=True)
                files.append({**ef.describe(path, name, "dynamo" if dynamo else "torchscript", 1, err),
                              **split_errors(name, path)})
                assert files[-1]["max_abs_diff_scores"] < ef.ATOL, files[-1]
                print(f"[ok] {fname}  {os.path.getsize(path) / 1e6:.2f} MB  max|diff| {err:.2e}")
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                failures[fname] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                print(f"[FAIL] {fname}: {failures[fname]}")
                status = 1
                for p in (path, path + ".data"):
                    if os.path.exists(p):
                        os.remove(p)
    calib = np.random.default_rng(0).standard_normal((32, *SHAPE)).astype(np.float32)
    calib_path = os.path.join(HERE, "det_calib.npy")
    np.save(calib_path, calib)
    ef.write_manifest(HERE, "models/detection/export_yolo.py", files, failures,
                      {"file": "det_calib.npy", "shape": list(calib.shape), "dtype": "float32",
                       "generator": "numpy default_rng(0).standard_normal", "sha256": ef.sha256(calib_path)},
                      extra={"nc": NC, "reg_max": 16, "strides": [8, 16, 32], "anchors_yolov5_px": DetectV5.ANCHORS,
                             "tolerance": "max|ort - torch| < 1e-4 * max(1, max|torch|) (3 seeded inputs); "
                                          "scores < 1e-4 absolute; onnx.checker full_check; every file < 2 MB"})
    return status


if __name__ == "__main__":
    sys.exit(main())
