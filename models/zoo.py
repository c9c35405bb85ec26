"""Reference zoo: small plain-PyTorch models whose *structure* is realistic.

Each model is tiny (random weights, fixed seed) but reproduces the graph patterns the
pruner must understand: residual Adds, projection shortcuts, Flatten->Gemm, depthwise
and grouped convs, squeeze-excite gating, dense Concat, Split/Concat (C2f), channels-last
LayerNorm with permutes, GroupNorm.

Random init alone gives degenerate BatchNorm statistics (mean 0, var 1) and affine
parameters (1, 0), which would hide bugs in BN folding or in shift compensation. So
``build(name)`` randomises every norm's affine parameters and then *calibrates* the BN
running statistics on random inputs (cumulative average, train mode), leaving the model
in eval mode with statistics that match its own activations, as in a trained model.

Torch is needed only to (re)generate the fixtures; tests read the ONNX files.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SEED = 0


# --------------------------------------------------------------------------- VGG
class VGG(nn.Module):
    """VGG-style: [conv-BN-ReLU]xN + MaxPool per stage, then Flatten -> Linear -> ReLU -> Linear.

    32x32 input, four pools -> 64 x 2 x 2 at the flatten, so the first Linear's input
    channels couple to the last conv's output channels in blocks of 4 (C -> C*H*W).
    """

    def __init__(self, cfg=((16, 16), (32, 32), (64, 64), (64,)), num_classes=10):
        super().__init__()
        layers, c_in = [], 3
        for stage in cfg:
            for c in stage:
                layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
                c_in = c
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(c_in * 2 * 2, 64),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(64, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


# ------------------------------------------------------------------ CIFAR ResNet
class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN (+ shortcut) -> ReLU. Projection = 1x1 conv + BN ("option B")."""

    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al. 2016 CIFAR ResNet-(6n+2): 16/32/64 channels, n basic blocks per stage."""

    def __init__(self, depth=20, num_classes=10, widths=(16, 32, 64), in_channels=3, stem_width=None,
                 strides=(1, 2, 2)):
        super().__init__()
        assert (depth - 2) % 6 == 0, "depth must be 6n+2"
        n = (depth - 2) // 6
        stem = stem_width or widths[0]
        self.conv1 = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        stages, c_in = [], stem
        for w, s in zip(widths, strides):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(c_in, w, s if i == 0 else 1))
                c_in = w
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def features(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x):
        return self.fc(self.features(x))


# ------------------------------------------------------- ResNet-50-style bottleneck
class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride here, as in torchvision v1.5) -> 1x1 expand (x4), + shortcut."""

    expansion = 4

    def __init__(self, c_in, planes, stride=1, groups=1, width=None):
        super().__init__()
        width = width or planes
        c_out = planes * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + idt)


class BottleneckResNet(nn.Module):
    """Stem conv, then stages of bottleneck blocks (stride 2 at the first block of stages 2+); GAP -> Linear.

    Per-stage ``groups`` and ``widths`` (3x3 width) turn it into ResNeXt.
    """

    def __init__(self, layers=(2, 2, 2), planes=(8, 16, 32), stem=16, groups=None, widths=None, num_classes=10):
        super().__init__()
        groups = groups or (1,) * len(layers)
        widths = widths or planes
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        stages, c_in = [], stem
        for i, (n, p, g, w) in enumerate(zip(layers, planes, groups, widths)):
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(c_in, p, stride=(2 if (i > 0 and j == 0) else 1), groups=g, width=w))
                c_in = p * Bottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


# ------------------------------------------------------------------ MobileNetV2
class InvertedResidual(nn.Module):
    """1x1 expand-BN-ReLU6 -> depthwise 3x3 (groups=C)-BN-ReLU6 -> 1x1 project-BN (linear), + x if stride 1 & same width."""

    def __init__(self, c_in, c_out, stride, expand):
        super().__init__()
        hidden = c_in * expand
        self.use_res = stride == 1 and c_in == c_out
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """CIFAR-style MobileNetV2 at a small width multiplier (stride-1 stem for 32x32)."""

    # (expand t, channels c, repeats n, stride s) -- the paper's table scaled by ~0.5 and shortened
    CFG = ((1, 8, 1, 1), (6, 12, 2, 1), (6, 16, 3, 2), (6, 32, 2, 2), (6, 48, 2, 1), (6, 64, 1, 2))

    def __init__(self, num_classes=10, last=160):
        super().__init__()
        layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(inplace=True)]
        c_in = 16
        for t, c, n, s in self.CFG:
            for i in range(n):
                layers.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                c_in = c
        layers += [nn.Conv2d(c_in, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# ------------------------------------------------------------------ MobileNetV3
def _make_divisible(v, divisor=8):
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """AdaptiveAvgPool -> 1x1 conv (reduce) -> ReLU -> 1x1 conv (expand) -> Hardsigmoid, times x."""

    def __init__(self, c, reduce=4):
        super().__init__()
        r = _make_divisible(c // reduce)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, r, 1)
        self.fc2 = nn.Conv2d(r, c, 1)

    def forward(self, x):
        s = self.fc2(F.relu(self.fc1(self.pool(x))))
        return x * F.hardsigmoid(s)


class MBv3Block(nn.Module):
    def __init__(self, c_in, k, exp, c_out, se, act, stride):
        super().__init__()
        Act = nn.Hardswish if act == "HS" else nn.ReLU
        self.use_res = stride == 1 and c_in == c_out
        layers = []
        if exp != c_in:
            layers += [nn.Conv2d(c_in, exp, 1, bias=False), nn.BatchNorm2d(exp), Act()]
        layers += [nn.Conv2d(exp, exp, k, stride, k // 2, groups=exp, bias=False), nn.BatchNorm2d(exp), Act()]
        if se:
            layers.append(SqueezeExcite(exp))
        layers += [nn.Conv2d(exp, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        y = self.block(x)
        return x + y if self.use_res else y


class MobileNetV3(nn.Module):
    """MobileNetV3-Small-like: Hardswish stem, SE blocks, Hardswish head with a Linear-Hardswish-Linear classifier."""

    # kernel, expanded, out, SE, activation, stride  (MobileNetV3-Small table, widths halved, fewer rows)
    CFG = (
        (3, 16, 16, True, "RE", 2),
        (3, 36, 16, False, "RE", 1),
        (3, 44, 24, False, "RE", 2),
        (5, 48, 24, True, "HS", 1),
        (5, 64, 32, True, "HS", 2),
        (5, 96, 32, True, "HS", 1),
    )

    def __init__(self, num_classes=10, last=128):
        super().__init__()
        layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish()]
        c_in = 16
        for k, exp, c, se, act, s in self.CFG:
            layers.append(MBv3Block(c_in, k, exp, c, se, act, s))
            c_in = c
        head = 6 * c_in
        layers += [nn.Conv2d(c_in, head, 1, bias=False), nn.BatchNorm2d(head), nn.Hardswish()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(head, last), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# --------------------------------------------------------------------- DenseNet
class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1 (bottleneck, 4*growth) -BN-ReLU-Conv3x3 (growth); output = cat([x, new], 1)."""

    def __init__(self, c_in, growth, bn_size=4):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        new = self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))
        return torch.cat([x, new], 1)


class Transition(nn.Sequential):
    def __init__(self, c_in, c_out):
        super().__init__(nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), nn.Conv2d(c_in, c_out, 1, bias=False), nn.AvgPool2d(2, 2))


class DenseNet(nn.Module):
    """DenseNet-BC-like: stem, dense block, transition (compression 0.5), dense block, BN-ReLU-GAP-Linear."""

    def __init__(self, growth=8, blocks=(3, 3, 3), stem=16, num_classes=10):
        super().__init__()
        layers = [nn.Conv2d(3, stem, 3, 1, 1, bias=False)]
        c = stem
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(DenseLayer(c, growth))
                c += growth
            if i != len(blocks) - 1:
                layers.append(Transition(c, c // 2))
                c //= 2
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.fc(torch.flatten(x, 1))


# ------------------------------------------------------------------ YOLOv8 C2f
class ConvBNSiLU(nn.Module):
    """Ultralytics ``Conv``: Conv2d(bias=False) - BN - SiLU."""

    def __init__(self, c1, c2, k=1, s=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class YoloBottleneck(nn.Module):
    def __init__(self, c, shortcut=True):
        super().__init__()
        self.cv1 = ConvBNSiLU(c, c, 3)
        self.cv2 = ConvBNSiLU(c, c, 3)
        self.add = shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """cv1 (1x1, 2c) -> chunk/split in two -> n bottlenecks each appended -> Concat((2+n)c) -> cv2 (1x1)."""

    def __init__(self, c1, c2, n=1, shortcut=True, use_split=False):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = ConvBNSiLU(c1, 2 * self.c, 1)
        self.cv2 = ConvBNSiLU((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(YoloBottleneck(self.c, shortcut) for _ in range(n))
        self.use_split = use_split

    def forward(self, x):
        if self.use_split:  # ultralytics C2f.forward_split
            y = list(self.cv1(x).split((self.c, self.c), 1))
        else:  # ultralytics C2f.forward
            y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    """cv1 -> three chained MaxPool(5, s1, p2) -> Concat of all four -> cv2."""

    def __init__(self, c1, c2, k=5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = ConvBNSiLU(c1, c_, 1)
        self.cv2 = ConvBNSiLU(c_ * 4, c2, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


class YoloC2f(nn.Module):
    """YOLOv8-n-like backbone slice (64x64 input, stride 16) + a small detect-ish head conv.

    Output: raw feature map [N, 4 + num_classes, 4, 4] (box + class logits per cell).
    """

    def __init__(self, num_classes=10):
        super().__init__()
        self.backbone = nn.Sequential(
            ConvBNSiLU(3, 16, 3, 2),          # 32x32
            ConvBNSiLU(16, 32, 3, 2),         # 16x16
            C2f(32, 32, n=1, shortcut=True),  # chunk
            ConvBNSiLU(32, 64, 3, 2),         # 8x8
            C2f(64, 64, n=2, shortcut=True, use_split=True),  # split
            ConvBNSiLU(64, 48, 3, 2),         # 4x4
            C2f(48, 48, n=1, shortcut=False),
            SPPF(48, 48),
        )
        self.head = nn.Sequential(ConvBNSiLU(48, 32, 3), nn.Conv2d(32, 4 + num_classes, 1))

    def forward(self, x):
        return self.head(self.backbone(x))


# --------------------------------------------------------------------- ConvNeXt
class LayerNorm2d(nn.Module):
    """Channels-first LayerNorm written as permute -> nn.LayerNorm(C) -> permute back."""

    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.ln = nn.LayerNorm(c, eps=eps)

    def forward(self, x):
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """dwconv 7x7 -> permute NHWC -> LayerNorm -> Linear(4C) -> GELU -> Linear(C) -> gamma* -> permute NCHW -> + x."""

    def __init__(self, dim, layer_scale=1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        y = (self.gamma * y).permute(0, 3, 1, 2)
        return x + y


class ConvNeXt(nn.Module):
    """ConvNeXt-like: 2x2 patchify stem + LN, stages of blocks, LN + 2x2/s2 conv downsampling, GAP -> LN -> Linear."""

    def __init__(self, depths=(2, 2, 1), dims=(16, 32, 64), num_classes=10):
        super().__init__()
        self.downsample = nn.ModuleList([nn.Sequential(nn.Conv2d(3, dims[0], 2, 2), LayerNorm2d(dims[0]))])
        for i in range(len(dims) - 1):
            self.downsample.append(nn.Sequential(LayerNorm2d(dims[i]), nn.Conv2d(dims[i], dims[i + 1], 2, 2)))
        self.stages = nn.ModuleList(nn.Sequential(*[ConvNeXtBlock(d) for _ in range(n)]) for n, d in zip(depths, dims))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        for ds, st in zip(self.downsample, self.stages):
            x = st(ds(x))
        return self.head(self.norm(x.mean((-2, -1))))


# ----------------------------------------------------------------- GroupNorm net
class GNBlock(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.gn1 = nn.GroupNorm(groups, c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.gn2 = nn.GroupNorm(groups, c)

    def forward(self, x):
        y = F.relu(self.gn1(self.conv1(x)))
        return F.relu(x + self.gn2(self.conv2(y)))


class GroupNormNet(nn.Module):
    """Conv-GN(8 groups of 4)-ReLU stem, residual GN blocks, a strided Conv-GN transition to 64 (16 groups), GAP -> Linear."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.GroupNorm(8, 32), nn.ReLU(inplace=True))
        self.block1 = GNBlock(32, 8)
        self.down = nn.Sequential(nn.Conv2d(32, 64, 3, 2, 1, bias=False), nn.GroupNorm(16, 64), nn.ReLU(inplace=True))
        self.block2 = GNBlock(64, 16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.block2(self.down(self.block1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


# ----------------------------------------------------------------------- ResNeXt
def resnext(num_classes=10):
    """ResNeXt-style bottlenecks with grouped 3x3: stage 1 = 8 groups x 4 ch (width 32),
    stage 2 = 32 groups x 4 ch (width 128, cardinality of ResNeXt-50 32x4d), stride 2 + projection."""
    return BottleneckResNet(layers=(2, 1), planes=(16, 32), stem=32, groups=(8, 32), widths=(32, 128),
                            num_classes=num_classes)


# ------------------------------------------------------------------------ registry
ZOO = {
    "vgg": (lambda: VGG(), (3, 32, 32)),
    "resnet20": (lambda: CifarResNet(20), (3, 32, 32)),
    "resnet56": (lambda: CifarResNet(56), (3, 32, 32)),
    "resnet_bottleneck": (lambda: BottleneckResNet(), (3, 32, 32)),
    "mobilenetv2": (lambda: MobileNetV2(), (3, 32, 32)),
    "mobilenetv3": (lambda: MobileNetV3(), (3, 32, 32)),
    "densenet": (lambda: DenseNet(), (3, 32, 32)),
    "yolov8_c2f": (lambda: YoloC2f(), (3, 64, 64)),
    "convnext": (lambda: ConvNeXt(), (3, 32, 32)),
    "groupnorm_net": (lambda: GroupNormNet(), (3, 32, 32)),
    "resnext": (lambda: resnext(), (3, 32, 32)),
}


def _randomise_norms(model: nn.Module, g: torch.Generator) -> None:
    """Give every norm layer non-trivial affine parameters (and ConvNeXt a non-negligible layer scale)."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        if isinstance(m, ConvNeXtBlock):
            with torch.no_grad():
                m.gamma.copy_(0.05 + 0.25 * torch.rand(m.gamma.shape, generator=g))


@torch.no_grad()
def _calibrate_bn(model: nn.Module, shape, g: torch.Generator, batches=8, batch_size=32) -> None:
    """Set BN running stats to the cumulative average of batch stats on random inputs."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    for _ in range(batches):
        model(torch.randn((batch_size, *shape), generator=g))
    for m in bns:
        m.momentum = 0.1


def build(name: str, seed: int = SEED) -> tuple[nn.Module, tuple[int, ...]]:
    """Return (model in eval mode, per-sample input shape CxHxW). Deterministic for a given seed."""
    ctor, shape = ZOO[name]
    torch.manual_seed(seed)
    model = ctor()
    g = torch.Generator().manual_seed(seed + 1)
    _randomise_norms(model, g)
    _calibrate_bn(model, shape, g)
    return model.eval(), shape
