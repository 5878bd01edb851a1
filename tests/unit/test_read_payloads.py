"""Serve's payload reading: base64 or bytes -> raw bytes named for errors, headers checked, pixels counted."""

import base64
import io

import pytest
from PIL import Image

from vitforge.serving.decode import BadInput, read_payloads


def encoded(w: int, h: int, fmt: str = "PNG", **save) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 20, 30)).save(buf, format=fmt, **save)
    return buf.getvalue()


def test_base64_and_bytes_give_the_same_bytes_and_the_total_pixels() -> None:
    raw = encoded(40, 30)
    wrapped = base64.encodebytes(raw).decode()  # line-wrapped, as `base64` writes it
    p = read_payloads([wrapped, raw], "images", 10**6, 10**6)
    assert p.raws == [raw, raw] and p.where == ["images[0]", "images[1]"] and p.pixels == 2 * 40 * 30
    assert not p.progressive


def test_a_progressive_jpeg_is_flagged_from_its_header() -> None:
    """Its decode costs a pass per scan whatever its size, so Serve never decodes it on the event loop."""
    assert read_payloads([encoded(64, 64, "JPEG", progressive=True)], "images", 10**6, 10**6).progressive
    assert not read_payloads([encoded(64, 64, "JPEG")], "images", 10**6, 10**6).progressive


def test_errors_name_the_field_and_come_before_any_decode() -> None:
    with pytest.raises(BadInput, match=r"^image: not valid base64") as e:
        read_payloads(["***"], "image", 10**6, 10**6)
    assert e.value.status == 400
    # A header error names the field too: /v1/search's single image is `image`, uploads `files[i]`.
    with pytest.raises(BadInput, match=r"^image: not a readable"):
        read_payloads([base64.b64encode(b"not an image").decode()], "image", 10**6, 10**6)
    with pytest.raises(BadInput, match=r"^files\[1\]: 100x100 = 10000 pixels exceeds") as e:
        read_payloads([encoded(10, 10), encoded(100, 100)], "files", 5000, 10**6)
    assert e.value.status == 413
    # Two images whose headers add up to more than the request's budget: 413 naming the second.
    with pytest.raises(BadInput, match=r"images\[1\]: the request's images exceed") as e:
        read_payloads([encoded(100, 100), encoded(100, 100)], "images", 10**6, 15_000)
    assert e.value.status == 413
