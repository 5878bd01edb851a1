"""Request payloads -> RGB images, with limits; every failure is a ``BadInput`` (HTTP 4xx)."""

from __future__ import annotations

import base64
import binascii
import io
import warnings

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


def open_image(raw: bytes, where: str, max_pixels: int, budget: list[int] | None = None) -> Image.Image:
    """Decode PNG/JPEG/WebP bytes to RGB, upright (EXIF orientation applied); refuses other
    formats, truncated files and images over ``max_pixels``, or over what is left of the request's
    ``budget`` (``[pixels]``, decremented): both checked from the header, before decompression."""
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
            if budget is not None:
                if w * h > budget[0]:
                    raise BadInput(f"{where}: the request's images exceed its limit of decoded pixels", 413)
                budget[0] -= w * h
            img.load()
            img = ImageOps.exif_transpose(img)
    except BadInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadInput(f"{where}: image too large ({e})", 413) from None
    except UnidentifiedImageError:
        raise BadInput(f"{where}: not a readable PNG, JPEG or WebP image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadInput(f"{where}: not a readable PNG, JPEG or WebP image ({e})") from None
    return img.convert("RGB")
