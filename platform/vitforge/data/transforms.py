"""Image transforms in torch (no torchvision): crops, flips, normalization, MAE-CT augmentations.

Each transform takes a (C, H, W) float tensor in [0, 1] (before ``Normalize``) and a
``torch.Generator``, so a sample's augmentation depends only on the seed it is given. The
geometric steps (``RandomResizedCrop``, ``Resize``, ``HorizontalFlip``) also take the decoded
uint8 image and keep it uint8 (torch's uint8 resampling kernel): no full-size float copy is made,
and a view built with ``normalize=False`` hands uint8 to the trainer, which normalizes on the
device (``normalize_uint8``): a quarter of the bytes through Ray's object store.
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


def resize_uint8(img: torch.Tensor, size: tuple[int, int], interpolation: str = "bicubic") -> torch.Tensor:
    """(3, H, W) uint8 -> (3, *size) uint8 with torch's uint8 kernel (antialiased, ~3-5x faster than
    on floats). It rounds and clamps between its two passes: on photos within 1.5/255 of ``resize``
    (tested; 1.1/255 max, 0.3/255 mean measured), on pixel noise up to 16/255 in a few pixels."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if tuple(img.shape[1:]) == tuple(size):
        return img
    x = img[None].contiguous(memory_format=torch.channels_last)  # the fast uint8 kernel's layout
    out = F.interpolate(x, size=size, mode=interpolation, align_corners=False, antialias=True)
    return out[0].contiguous()


def resized(img: torch.Tensor, size: tuple[int, int], interpolation: str = "bicubic") -> torch.Tensor:
    """(3, H, W) -> (3, *size) in the same dtype: uint8 by torch's uint8 kernel, floats as ``resize``."""
    return resize_uint8(img, size, interpolation) if img.dtype == torch.uint8 else resize(img, size, interpolation)


def to_float(img: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1]; floats as they are."""
    return img.float().div_(255.0) if img.dtype == torch.uint8 else img


def normalize_uint8(imgs: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> normalized fp32 on the images' device: the loader's uint8 batches
    become what ``Normalize`` gives, where the trainer runs (the GPU on GPU nodes)."""
    m = torch.tensor(mean, dtype=torch.float32, device=imgs.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=imgs.device).view(1, -1, 1, 1)
    return (imgs.float().div_(255.0) - m) / s


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
        return resized(img[:, top : top + ch, left : left + cw], (self.size, self.size), self.interpolation)


@dataclass
class Resize:
    size: int
    interpolation: str = "bicubic"

    def __call__(self, img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return resized(img, (self.size, self.size), self.interpolation)


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
class ToUint8:
    """The end of a view that leaves normalizing to the trainer: [0, 1] floats rounded to uint8."""

    def __call__(self, img: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        if img.dtype == torch.uint8:
            return img
        return img.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


UINT8_STEPS = (RandomResizedCrop, Resize, HorizontalFlip, ToUint8)  # the steps that take uint8 as it is


@dataclass
class Compose:
    steps: list

    def __call__(self, img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        for t in self.steps:
            if img.dtype == torch.uint8 and not isinstance(t, UINT8_STEPS):
                img = to_float(img)  # colour, blur, normalize: on floats in [0, 1]
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
    normalize: bool = True,
) -> Compose:
    """One view: crop (and flip, MAE, MAE-CT), plus colour/grey/blur/solarize with ``strong``.

    ``train=False`` gives the evaluation view: resize and normalize only. ``normalize=False`` ends
    the view in uint8 instead (the trainer normalizes on its device with ``normalize_uint8``).
    """
    last = Normalize(mean, std) if normalize else ToUint8()
    if not train:
        return Compose([Resize(size, interpolation), last])
    steps: list = [RandomResizedCrop(size, scale, ratio, interpolation)]
    if flip:
        steps.append(HorizontalFlip())
    if strong:
        steps += [ColorJitter(), Grayscale(), GaussianBlur(), Solarize()]
    return Compose([*steps, last])
