"""Request payloads -> RGB images, with limits; every failure is a ``BadInput`` (HTTP 4xx)."""

from __future__ import annotations

import base64
import binascii
import io
import warnings

from PIL import Image, UnidentifiedImageError

ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP"}


class BadInput(ValueError):
    """Client error: ``status`` is the HTTP code, the message says what was wrong."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def b64_to_bytes(data: str, where: str) -> bytes:
    if "," in data[:100] and data.startswith("data:"):
        data = data.split(",", 1)[1]  # data URLs: data:image/png;base64,....
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadInput(f"{where}: not valid base64 ({e})") from None


def open_image(raw: bytes, where: str, max_pixels: int) -> Image.Image:
    """Decode PNG/JPEG/WebP bytes to RGB; refuses other formats, truncated files and images over
    ``max_pixels`` (checked from the header, before decompression: no decompression bombs)."""
    if not raw:
        raise BadInput(f"{where}: empty image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw))
            if img.format not in ALLOWED_FORMATS:
                raise BadInput(f"{where}: unsupported image format {img.format}; send PNG, JPEG or WebP", 415)
            w, h = img.size
            if w * h > max_pixels:
                raise BadInput(f"{where}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}", 413)
            img.load()
    except BadInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadInput(f"{where}: image too large ({e})", 413) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise BadInput(f"{where}: not a readable PNG, JPEG or WebP image ({e})") from None
    return img.convert("RGB")
