"""Request payloads -> RGB images, with limits; every failure is a ``BadInput`` (HTTP 4xx)."""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from PIL import Image, ImageOps, UnidentifiedImageError

# MPO: the multi-picture JPEG that phones write; its first frame is the photo.
ALLOWED_FORMATS = {"PNG", "JPEG", "MPO", "WEBP"}


class BadInput(ValueError):
    """Client error: ``status`` is the HTTP code, the message says what was wrong."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def b64_to_bytes(data: str, where: str) -> bytes:
    if "," in data[:100] and data.startswith("data:"):
        data = data.split(",", 1)[1]  # data URLs: data:image/png;base64,....
    if any(c in data[:100_000] for c in " \r\n\t"):
        data = "".join(data.split())  # line-wrapped base64 (`base64`, Python's encodebytes)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadInput(f"{where}: not valid base64 ({e})") from None


@contextmanager
def _readable(where: str) -> Iterator[None]:
    """Pillow's errors on a bad or hostile file -> ``BadInput``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except BadInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadInput(f"{where}: image too large ({e})", 413) from None
    except UnidentifiedImageError:
        raise BadInput(f"{where}: not a readable PNG, JPEG or WebP image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadInput(f"{where}: not a readable PNG, JPEG or WebP image ({e})") from None


def _header(raw: bytes, where: str, max_pixels: int) -> Image.Image:
    """The image opened lazily (Pillow reads the header only): format and size checked."""
    if not raw:
        raise BadInput(f"{where}: empty image")
    with _readable(where):
        img = Image.open(io.BytesIO(raw))
    if img.format not in ALLOWED_FORMATS:
        raise BadInput(f"{where}: unsupported image format {img.format}; send PNG, JPEG or WebP", 415)
    w, h = img.size
    if w * h > max_pixels:
        raise BadInput(f"{where}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}", 413)
    return img


class Payloads(NamedTuple):
    raws: list[bytes]
    where: list[str]  # each image's name in errors: images[3], files[0], image
    pixels: int  # the request's total, from the headers
    progressive: bool  # a progressive JPEG among them: its decode costs a pass per scan, whatever its size


def check_images(raws: list[bytes], where: list[str], max_pixels: int, max_request_pixels: int) -> tuple[int, bool]:
    """Every image's format and size from its header, before any is decoded: a request whose images
    add up to more than ``max_request_pixels`` costs no decompression at all. Returns the total
    pixels and whether any image is a progressive JPEG."""
    total, progressive = 0, False
    for raw, name in zip(raws, where, strict=True):
        img = _header(raw, name, max_pixels)
        progressive |= bool(img.info.get("progressive") or img.info.get("progression"))
        total += img.size[0] * img.size[1]
        if total > max_request_pixels:
            raise BadInput(f"{name}: the request's images exceed its limit of {max_request_pixels} pixels", 413)
    return total, progressive


def read_payloads(payloads: list[bytes] | list[str], field: str, max_pixels: int, max_request_pixels: int) -> Payloads:
    """Uploaded bytes or base64 strings -> raw bytes named for errors (``field[i]``; ``image`` for a
    single one), every header checked; nothing decoded yet."""
    where = [field if field == "image" else f"{field}[{i}]" for i in range(len(payloads))]
    raws = [p if isinstance(p, bytes) else b64_to_bytes(p, w) for p, w in zip(payloads, where, strict=True)]
    return Payloads(raws, where, *check_images(raws, where, max_pixels, max_request_pixels))


def open_image(raw: bytes, where: str, max_pixels: int) -> Image.Image:
    """Decode PNG/JPEG/WebP bytes to RGB, upright (EXIF orientation applied); refuses other
    formats, truncated files and images over ``max_pixels`` (from the header, before decompression)."""
    img = _header(raw, where, max_pixels)
    with _readable(where):
        img.load()
        img = ImageOps.exif_transpose(img)
    return img.convert("RGB")
