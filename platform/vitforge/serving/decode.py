"""Request payloads -> RGB images, with limits; every failure is a ``BadInput`` (HTTP 4xx)."""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

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


def check_images(raws: list[bytes], max_pixels: int, max_request_pixels: int) -> int:
    """Every image's format and size from its header, before any is decoded: a request whose images
    add up to more than ``max_request_pixels`` costs no decompression at all. Returns the total."""
    total = 0
    for i, raw in enumerate(raws):
        w, h = _header(raw, f"images[{i}]", max_pixels).size
        total += w * h
        if total > max_request_pixels:
            raise BadInput(f"images[{i}]: the request's images exceed its limit of {max_request_pixels} pixels", 413)
    return total


def read_payloads(
    payloads: list[bytes] | list[str], field: str, max_pixels: int, max_request_pixels: int
) -> tuple[list[bytes], list[str], int]:
    """Uploaded bytes or base64 strings -> (raw bytes, the name of each for errors, total pixels),
    every header checked; nothing decoded yet."""
    where = [f"{field}[{i}]" if field == "images" else field for i in range(len(payloads))]
    raws = [p if isinstance(p, bytes) else b64_to_bytes(p, w) for p, w in zip(payloads, where, strict=True)]
    return raws, where, check_images(raws, max_pixels, max_request_pixels)


def open_image(raw: bytes, where: str, max_pixels: int) -> Image.Image:
    """Decode PNG/JPEG/WebP bytes to RGB, upright (EXIF orientation applied); refuses other
    formats, truncated files and images over ``max_pixels`` (from the header, before decompression)."""
    img = _header(raw, where, max_pixels)
    with _readable(where):
        img.load()
        img = ImageOps.exif_transpose(img)
    return img.convert("RGB")
