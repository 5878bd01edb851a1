"""Serve's payload reading: base64 or bytes -> raw bytes named for errors, headers checked, pixels counted."""

import base64
import io

import pytest
from PIL import Image

from vitforge.serving.decode import BadInput, read_payloads


def png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_base64_and_bytes_give_the_same_bytes_and_the_total_pixels() -> None:
    raw = png(40, 30)
    wrapped = base64.encodebytes(raw).decode()  # line-wrapped, as `base64` writes it
    raws, where, pixels = read_payloads([wrapped, raw], "images", 10**6, 10**6)
    assert raws == [raw, raw] and where == ["images[0]", "images[1]"] and pixels == 2 * 40 * 30


def test_errors_name_the_field_and_come_before_any_decode() -> None:
    with pytest.raises(BadInput, match=r"^image: not valid base64") as e:
        read_payloads(["***"], "image", 10**6, 10**6)
    assert e.value.status == 400
    # Two images whose headers add up to more than the request's budget: 413 naming the second.
    with pytest.raises(BadInput, match=r"images\[1\]: the request's images exceed") as e:
        read_payloads([png(100, 100), png(100, 100)], "images", 10**6, 15_000)
    assert e.value.status == 413
