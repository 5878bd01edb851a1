"""Image transforms in torch (no torchvision): crops, flips, normalization, MAE-CT augmentations.

Each transform takes a (C, H, W) float tensor in [0, 1] (before ``Normalize``) and a
``torch.Generator``, so a sample's augmentation depends only on the seed it is given. The
geometric first step (``RandomResizedCrop``, ``Resize``) also takes the decoded uint8 image: it
crops and shrinks in uint8 and returns floats, so a full-size float copy is never made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

INTERPOLATIONS = ("bilinear", "bicubic")


def _rand(g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def resize(img: torch.Tensor, size: tuple[int, int], interpolation: str = "bicubic") -> torch.Tensor:
    """(C, H, W) -> (C, *size); antialiased when shrinking, clamped to [0, 1] (bicubic overshoots)."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if tuple(img.shape[1:]) == tuple(size):
        return img
    out = F.interpolate(img[None], size=size, mode=interpolation, align_corners=False, antialias=True)[0]
    return out.clamp_(0, 1)


def resize_uint8(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, *size) uint8 with torch's uint8 kernel (bicubic, antialiased, ~5x
    faster than floats). It rounds and clamps between its two passes, so it is within 1/255 of
    ``resize`` only when both sides shrink 3x or more (at 2x up to 4/255 on noise, nearer 1x 16/255):
    refused otherwise."""
    if img.shape[1] < 3 * size[0] or img.shape[2] < 3 * size[1]:
        raise ValueError(f"resize_uint8 needs a 3x shrink on both sides: {tuple(img.shape[1:])} -> {tuple(size)}")
    x = img[None].contiguous(memory_format=torch.channels_last)  # the fast uint8 kernel's layout
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)[0].contiguous()


def resized_float(img: torch.Tensor, size: tuple[int, int], interpolation: str = "bicubic") -> torch.Tensor:
    """(3, H, W) uint8 or float in [0, 1] -> (3, *size) float in [0, 1]. A uint8 image is made
    float only after cropping (callers slice first), and one that shrinks 3x or more is resized
    before that (``resize_uint8``); otherwise the result is exactly the float path's."""
    if img.dtype != torch.uint8:
        return resize(img, size, interpolation)
    if interpolation == "bicubic" and img.shape[1] >= 3 * size[0] and img.shape[2] >= 3 * size[1]:
        return resize_uint8(img, size).float().div_(255.0)
    return resize(img.float().div_(255.0), size, interpolation)


@dataclass
class RandomResizedCrop:
    """Crop a random area fraction in ``scale`` with aspect ratio in ``ratio``, resize to ``size``."""

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bicubic"

    def params(self, h: int, w: int, g: torch.Generator) -> tuple[int, int, int, int]:
        area = h * w
        log_r = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):  # torchvision's rejection sampling, then a centre crop
            target = area * _rand(g, *self.scale)
            aspect = math.exp(_rand(g, *log_r))
            cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(torch.randint(0, h - ch + 1, (), generator=g))
                left = int(torch.randint(0, w - cw + 1, (), generator=g))
                return top, left, ch, cw
        in_ratio = w / h
        if in_ratio < self.ratio[0]:
            cw, ch = w, round(w / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            ch, cw = h, round(h * self.ratio[1])
        else:
            cw, ch = w, h
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def __call__(self, img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        top, left, ch, cw = self.params(img.shape[1], img.shape[2], g)
        return resized_float(img[:, top : top + ch, left : left + cw], (self.size, self.size), self.interpolation)


@dataclass
class Resize:
    size: int
    interpolation: str = "bicubic"

    def __call__(self, img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return resized_float(img, (self.size, self.size), self.interpolation)


@dataclass
class HorizontalFlip:
    p: float = 0.5

    def __call__(self, img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return img.flip(-1) if _rand(g) < self.p else img


def _gray(img: torch.Tensor) -> torch.Tensor:
    """(3, H, W) -> (1, H, W) luma (ITU-R 601)."""
    return (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]


@dataclass
class ColorJitter:
    """Brightness, contrast and saturation factors drawn from [1 - x, 1 + x], applied in random order."""

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    p: float = 0.8

    def __call__(self, img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if _rand(g) >= self.p or img.shape[0] != 3:
            return img
        for k in torch.randperm(3, generator=g).tolist():
            amount = (self.brightness, self.contrast, self.saturation)[k]
            f = _rand(g, 1 - amount, 1 + amount)
            if k == 0:
                img = img * f
            elif k == 1:
                img = (img - _gray(img).mean()) * f + _gray(img).mean()
            else:
                gray = _gray(img)
                img = (img - gray) * f + gray
            img = img.clamp(0, 1)
        return img


@dataclass
class Grayscale:
    p: float = 0.2

    def __call__(self, img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if _rand(g) >= self.p or img.shape[0] != 3:
            return img
        return _gray(img).expand(3, -1, -1).clone()


@dataclass
class GaussianBlur:
    p: float = 0.5
    sigma: tuple[float, float] = (0.1, 2.0)

    def __call__(self, img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if _rand(g) >= self.p:
            return img
        s = _rand(g, *self.sigma)
        radius = max(1, min(int(3 * s), (min(img.shape[1:]) - 1) // 2))
        x = torch.arange(-radius, radius + 1, dtype=img.dtype)
        k = torch.exp(-(x**2) / (2 * s * s))
        k = k / k.sum()
        c = img.shape[0]
        out = F.pad(img[None], (radius, radius, radius, radius), mode="reflect")
        out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)  # separable: rows
        out = F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)  # then columns
        return out[0]


@dataclass
class Solarize:
    p: float = 0.2
    threshold: float = 0.5

    def __call__(self, img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if _rand(g) >= self.p:
            return img
        return torch.where(img >= self.threshold, 1.0 - img, img)


@dataclass
class Normalize:
    mean: Sequence[float]
    std: Sequence[float]

    def __call__(self, img: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=img.dtype).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=img.dtype).view(-1, 1, 1)
        return (img - mean) / std


@dataclass
class Compose:
    steps: list

    def __call__(self, img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        for t in self.steps:
            if img.dtype == torch.uint8 and not isinstance(t, RandomResizedCrop | Resize):
                img = img.float().div_(255.0)  # only the geometric steps take uint8
            img = t(img, g)
        return img


# ImageNet statistics, the default where a dataset brings none.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_view(
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    interpolation: str = "bicubic",
    strong: bool = False,
    train: bool = True,
    flip: bool = True,
) -> Compose:
    """One view: crop (and flip, MAE, MAE-CT), plus colour/grey/blur/solarize with ``strong``.

    ``train=False`` gives the evaluation view: resize and normalize only.
    """
    if not train:
        return Compose([Resize(size, interpolation), Normalize(mean, std)])
    steps: list = [RandomResizedCrop(size, scale, ratio, interpolation)]
    if flip:
        steps.append(HorizontalFlip())
    if strong:
        steps += [ColorJitter(), Grayscale(), GaussianBlur(), Solarize()]
    return Compose([*steps, Normalize(mean, std)])
