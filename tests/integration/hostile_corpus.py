"""Hostile requests to the embedding API, one per class of abuse the server must survive, each with
the answers it may give. ``send`` puts one on the wire as a client (or an attacker's raw socket) would.

The app under attack runs with the shipped limits (64 images, 4096² pixels per image, 64 Mi pixels
per request, 32 MiB bodies), an API key (``KEY``) and a short body read timeout (``READ_TIMEOUT_S``).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from PIL import Image

KEY = "s3cret"
READ_TIMEOUT_S = 5.0
JSON_TYPE = {"content-type": "application/json"}


@dataclass(frozen=True)
class Hostile:
    name: str
    path: str
    body: bytes | Callable[[], bytes | Iterator[bytes]] = b""  # a callable: built when sent (big, or a stream)
    expect: tuple[int, ...] = (422,)
    says: str = ""  # in the JSON error
    headers: dict[str, Any] = field(default_factory=lambda: dict(JSON_TYPE))
    key: bool = True  # send the right API key
    method: str = "POST"
    raw: bytes | None = None  # bytes written as they are on a socket (what no HTTP client sends)
    by_proxy: bool = False  # refused by the proxy's HTTP parser before the app: a plain-text answer


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes

    def error(self) -> str:
        return json.loads(self.body)["error"]


def j(obj: Any) -> bytes:
    """JSON as Python writes it: lone surrogates travel as ``\\ud800`` escapes, as any client may send."""
    return json.dumps(obj).encode()


def image_bytes(arr: np.ndarray | Image.Image, fmt: str = "PNG", **save: Any) -> bytes:
    img = arr if isinstance(arr, Image.Image) else Image.fromarray(arr)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def good_image(seed: int = 0, size: int = 24) -> bytes:
    return image_bytes(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def _flat_4096() -> str:
    """4096x4096 of one palette colour: 16.7 M pixels in ~10 KB of PNG."""
    return b64(image_bytes(Image.new("P", (4096, 4096), 3)))


def _sixteen_huge() -> bytes:
    return j({"images": [_flat_4096()] * 16})  # 268 M pixels in ~0.2 MB; the request allows 64 Mi


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display", as phones write portrait photos
    arr = np.random.default_rng(1).integers(0, 256, (24, 16, 3), dtype=np.uint8)
    return j({"images": [b64(image_bytes(arr, exif=exif))]})


def _mpo() -> bytes:
    arr = np.random.default_rng(2).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    second = Image.new("RGB", (24, 24))
    return j({"images": [b64(image_bytes(arr, "MPO", save_all=True, append_images=[second]))]})


def _chunked_35mb() -> Iterator[bytes]:
    """35 MiB with no content-length (httpx sends a generator chunked)."""
    yield b'{"images": ["'
    for _ in range(35):
        yield b"A" * 2**20
    yield b'"]}'


def _chunked_multipart_35mb() -> Iterator[bytes]:
    """A 35 MiB multipart upload with no content-length: counted as the JSON body is (413)."""
    head, tail = _multipart(1, b"").split(b"\r\n--" + BOUNDARY.encode() + b"--")
    yield head  # the part's headers, up to the blank line
    for _ in range(35):
        yield b"\x89" * 2**20
    yield b"\r\n--" + BOUNDARY.encode() + b"--" + tail


def _gif() -> str:
    return b64(image_bytes(Image.new("RGB", (8, 8)), "GIF"))


def _request_head(path: str, extra: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-api-key: {KEY}\r\n"
            f"{extra}\r\n").encode()  # fmt: skip


BOUNDARY = "hostileboundary"


def _multipart(n: int, content: bytes = b"x") -> bytes:
    part = (f"--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"files\"; filename=\"f.png\"\r\n"
            f"content-type: image/png\r\n\r\n").encode() + content + b"\r\n"  # fmt: skip
    return part * n + f"--{BOUNDARY}--\r\n".encode()


TEXT = "/v1/embeddings/text"
IMAGE = "/v1/embeddings/image"
UPLOAD = "/v1/embeddings/image/upload"
ZERO_SHOT = "/v1/classify/zero-shot"
SEARCH = "/v1/search"
PNG = b64(good_image())
CLOOB = {"model": "cloob"}

# fmt: off
CORPUS: list[Hostile] = [
    # -- text that no tokenizer can encode, in every text field ---------------------------------------
    Hostile("surrogate in texts", TEXT, j({"texts": ["a\ud800"], **CLOOB}), (422,), "texts.0"),
    Hostile("surrogate pair halves in texts", TEXT, j({"texts": ["\udfff\ud800"], **CLOOB}), (422,), "texts.0"),
    Hostile("surrogate in labels", ZERO_SHOT, j({"images": [PNG], "labels": ["ok", "\ud800"], **CLOOB}), (422,),
            "labels.1"),
    Hostile("surrogate in search text", SEARCH, j({"text": "\udfff", **CLOOB}), (422,), "text"),
    Hostile("surrogate in template", ZERO_SHOT, j({"images": [PNG], "labels": ["a"], "template": "\ud800{}"}), (422,),
            "template"),
    Hostile("surrogate in model name", IMAGE, j({"images": [PNG], "model": "\ud800"}), (404,), "unknown model"),
    Hostile("surrogate in base64", IMAGE, j({"images": ["AAAA\ud800"]}), (400,), "not valid base64"),
    Hostile("invalid UTF-8 bytes in JSON", TEXT, b'{"texts": ["\xff\xfe\xc0"]}', (400,), "error parsing the body"),
    # -- prompt templates: exactly one bare {} -------------------------------------------------------
    *[
        Hostile(f"template {t!r}", ZERO_SHOT, j({"images": [PNG], "labels": ["a"], "template": t, **CLOOB}), (422,),
                "template")
        for t in ("{} {}", "{0} {}", "{} {", "{x} {}", "{}{.__class__}", "{{}}{0:>10000000}", "{!r}", "no braces")
    ],
    Hostile("template of 201 chars", ZERO_SHOT, j({"images": [PNG], "labels": ["a"], "template": "{}" + "x" * 199}),
            (422,), "template"),
    # -- counts and sizes ----------------------------------------------------------------------------
    Hostile("20,000 labels", ZERO_SHOT, j({"images": [PNG], "labels": ["a"] * 20_000, **CLOOB}), (422,), "labels"),
    Hostile("1,001 labels", ZERO_SHOT, j({"images": [PNG], "labels": ["a"] * 1001, **CLOOB}), (422,), "labels"),
    Hostile("no labels", ZERO_SHOT, j({"images": [PNG], "labels": [], **CLOOB}), (422,), "labels"),
    Hostile("a text of 1,001 chars", TEXT, j({"texts": ["x" * 1001], **CLOOB}), (422,), "texts.0"),
    Hostile("a text of 100,000 chars", TEXT, j({"texts": ["x" * 100_000], **CLOOB}), (422,), "texts.0"),
    Hostile("65 texts", TEXT, j({"texts": ["a"] * 65, **CLOOB}), (413,), "exceed the limit of 64"),
    Hostile("65 images (none decoded)", IMAGE, j({"images": ["x"] * 65}), (413,), "exceed the limit of 64"),
    Hostile("no images", IMAGE, j({"images": []}), (400,), "no images"),
    Hostile("16 images of 4096x4096 in 0.2 MB", IMAGE, _sixteen_huge, (413,), "limit of 67108864 pixels"),
    Hostile("one image of 4097x4096", IMAGE, lambda: j({"images": [b64(image_bytes(Image.new("P", (4097, 4096))))]}),
            (413,), "exceeds the limit of 16777216"),
    Hostile("35 MiB chunked body, no content-length", IMAGE, _chunked_35mb, (413,), "exceeds the limit"),
    Hostile("35 MiB chunked multipart upload, no content-length", UPLOAD, _chunked_multipart_35mb, (413,),
            "exceeds the limit", headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"}),
    Hostile("content-length 100000000, no body", IMAGE, raw=_request_head(IMAGE, "content-length: 100000000\r\n"),
            expect=(413,), says="exceeds the limit"),
    Hostile("stalled body", TEXT, raw=_request_head(TEXT, "content-length: 100\r\n") + b'{"texts": [',
            expect=(408,), says="not received within"),
    Hostile("64 KB of headers", TEXT, j({"texts": ["a"]}), (431,), "headers exceed",
            headers={**JSON_TYPE, "x-padding": "a" * 65536}),
    Hostile("2,000 multipart files", UPLOAD, lambda: _multipart(2000), (400,), "Too many files",
            headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"}),
    Hostile("JSON nested 100,000 deep", TEXT, b"[" * 100_000 + b"]" * 100_000, (400,), "error parsing the body"),
    Hostile("an integer of 5,000 digits", SEARCH, b'{"text": "a", "k": ' + b"9" * 5000 + b"}", (400,),
            "error parsing the body"),
    Hostile("NaN beta", SEARCH, b'{"text": "a", "beta": NaN, "model": "cloob"}', (422,), "beta"),
    Hostile("k of 10^6", SEARCH, j({"text": "a", "k": 10**6, **CLOOB}), (422,), "k"),
    # -- who is asking, and in which format ----------------------------------------------------------
    Hostile("no key, malformed body", IMAGE, b"{not json", (401,), "API key", key=False),
    Hostile("no key, text/plain", IMAGE, b"hello", (401,), "API key", headers={"content-type": "text/plain"},
            key=False),
    Hostile("wrong non-ASCII key", IMAGE, j({"images": [PNG]}), (401,), "API key",
            headers={**JSON_TYPE, "x-api-key": b"\xe9\xff"}, key=False),
    Hostile("text/plain", IMAGE, b"hello", (415,), "content-type 'text/plain'", headers={"content-type": "text/plain"}),
    Hostile("no content type", IMAGE, j({"images": [PNG]}), (415,), "(none)", headers={}),
    Hostile("multipart without a boundary", UPLOAD, b"abc", (400,), "boundary",
            headers={"content-type": "multipart/form-data"}),
    Hostile("malformed JSON", IMAGE, b"{not json", (422,), "JSON decode error"),
    Hostile("JSON list, not object", IMAGE, b"[1, 2]", (422,), "invalid request"),
    Hostile("unknown field", IMAGE, j({"images": [PNG], "pictures": []}), (422,), "pictures"),
    Hostile('model ""', IMAGE, j({"images": [PNG], "model": ""}), (404,), "unknown model ''"),
    Hostile("wrong method", IMAGE, method="GET", expect=(405,), says="Method Not Allowed"),
    Hostile("unknown path", "/v1/../../etc/passwd", j({}), (404,), "Not Found"),
    Hostile("text to an image-only model", TEXT, j({"texts": ["hi"], "model": "vit"}), (400,), "image-only"),
    # -- what is not an image ------------------------------------------------------------------------
    Hostile("random bytes as base64", IMAGE, j({"images": [b64(bytes(range(256)) * 4)]}), (400,), "not a readable"),
    Hostile("truncated PNG", IMAGE, j({"images": [b64(good_image()[:60])]}), (400,), "not a readable"),
    Hostile("GIF", IMAGE, lambda: j({"images": [_gif()]}), (415,), "unsupported image format"),
    Hostile("not base64", IMAGE, j({"images": ["***"]}), (400,), "not valid base64"),
    Hostile("empty upload file", UPLOAD, lambda: _multipart(1, b""), (400,), "empty image",
            headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"}),
    # -- the protocol itself (answered by the proxy's HTTP parser) -----------------------------------
    Hostile("content-length not a number", TEXT, raw=_request_head(TEXT, "content-length: abc\r\n") + b"{}",
            expect=(400,), by_proxy=True),
    Hostile("two content-lengths", TEXT, raw=_request_head(TEXT, "content-length: 2\r\ncontent-length: 3\r\n") + b"{}",
            expect=(400,), by_proxy=True),
    Hostile("bad chunk size", TEXT,
            raw=_request_head(TEXT, "transfer-encoding: chunked\r\n") + b"zz\r\nab\r\n0\r\n\r\n",
            expect=(400,), by_proxy=True),
    # -- what users really send, accepted ------------------------------------------------------------
    Hostile("EXIF-rotated PNG", IMAGE, _exif_rotated, (200,)),
    Hostile("MPO (phone JPEG)", IMAGE, _mpo, (200,)),
    Hostile("line-wrapped base64", IMAGE, j({"images": [base64.encodebytes(good_image()).decode()]}), (200,)),
    Hostile("data URL", IMAGE, j({"images": [f"data:image/png;base64,{PNG}"]}), (200,)),
    Hostile("odd but valid unicode", TEXT, j({"texts": ["e\u0301\u202e\ufeff\x00🦄", "ﷺ" * 1000], **CLOOB}), (200,)),
    Hostile("literal braces in a template", ZERO_SHOT,
            j({"images": [PNG], "labels": ["a", "b"], "template": "{{x}} {}", **CLOOB}), (200,)),
    Hostile("charset in the content type", IMAGE, j({"images": [PNG]}), (200,),
            headers={"content-type": "application/json; charset=utf-8"}),
]
# fmt: on


def send(url: str, case: Hostile) -> Answer:
    """One request as the case describes it; the answer as received."""
    if case.raw is not None:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10 * READ_TIMEOUT_S) as sock:
            sock.sendall(case.raw)
            resp = http.client.HTTPResponse(sock)
            resp.begin()
            return Answer(resp.status, resp.getheader("content-type") or "", resp.read())
    headers = {**case.headers, **({"x-api-key": KEY} if case.key else {})}
    body = case.body() if callable(case.body) else case.body
    with httpx.Client(base_url=url, timeout=120) as c:
        r = c.request(case.method, case.path, content=body or None, headers=headers)
    return Answer(r.status_code, r.headers.get("content-type", ""), r.content)
