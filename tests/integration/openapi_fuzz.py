"""Hypothesis strategies for requests to each POST endpoint of the API, built from its own
``/openapi.json``. Some are well-formed (the right key, JSON, values within the schema, real
images): they reach the models. Most carry one hostile part, the rest valid so that it gets through
to the code behind the first checks: a hostile string in a field (lone surrogates, braces, a
megabyte), random bytes or a broken image as base64, a bound stepped over, a field dropped, of the
wrong type or unknown, junk JSON; or a hostile envelope: bytes that are not UTF-8, deep nesting,
odd content types, no key or a wrong one."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from PIL import Image

JSONValue = Any


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    content: bytes | None = None  # a JSON (or junk) body
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None  # a multipart body: files ...
    data: dict[str, str] | None = None  # ... and form fields


ODD_STRINGS = [
    "", " ", "\x00", "\ud800", "a\udfff", "\udbff\udc00", "e\u0301", "\u202e\u2066", "\ufeff", "🦄" * 50,
    "ﷺ" * 1000, "{}", "{0}", "{.__class__}", "{}{}", "{{}}", "{0:>100000}", "%s%n", "${jndi:ldap://x}",
    "../../etc/passwd", "null", "\\u0000", "x" * 1001, "x" * 2**20, "data:image/png;base64,", "AAAA\n\nAAAA",
]  # fmt: skip
CONTENT_TYPES = [
    "application/json; charset=utf-8", "APPLICATION/JSON", "application/merge-patch+json", "text/plain", "",
    "multipart/form-data", "application/x-www-form-urlencoded", "application/json; boundary=x", "image/png",
]  # fmt: skip
MODELS = ["vit", "cloob"]
# Text a user may send: any Unicode that UTF-8 can carry.
TEXT = st.text(st.characters(codec="utf-8"), max_size=30)


def _image(size: tuple[int, int], colour: int, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (colour, 255 - colour, colour // 2)).save(buf, format=fmt)
    return buf.getvalue()


def _splice(raw: bytes, at: int, junk: bytes) -> bytes:
    at %= max(len(raw), 1)
    return raw[:at] + junk + raw[at + len(junk) :]


def images() -> st.SearchStrategy[bytes]:
    """Small PNG, JPEG and WebP images of one colour."""
    sizes = st.tuples(st.integers(1, 40), st.integers(1, 40))
    return st.builds(_image, sizes, st.integers(0, 255), st.sampled_from(["PNG", "JPEG", "WEBP"]))


def image_bytes(hostile: bool) -> st.SearchStrategy[bytes]:
    """Images; hostile: also a GIF, images with bytes overwritten or cut short, random bytes."""
    if not hostile:
        return images()
    gif = st.builds(_image, st.just((8, 8)), st.integers(0, 255), st.just("GIF"))
    broken = st.builds(_splice, images(), st.integers(0, 10_000), st.binary(min_size=1, max_size=16))
    cut = st.builds(lambda raw, f: raw[: int(len(raw) * f)], images(), st.floats(0, 1))
    return st.one_of(images(), gif, broken, cut, st.binary(max_size=300))


def _base64_forms(raw: st.SearchStrategy[bytes]) -> st.SearchStrategy[str]:
    """Base64 as clients write it: plain, as a data URL, line-wrapped."""
    return st.one_of(
        raw.map(lambda b: base64.b64encode(b).decode()),
        raw.map(lambda b: f"data:image/png;base64,{base64.b64encode(b).decode()}"),
        raw.map(lambda b: base64.encodebytes(b).decode()),
    )


def base64_images(hostile: bool) -> st.SearchStrategy[str]:
    """Base64 images; hostile: broken images, random bytes, GIFs or any string instead."""
    return st.one_of(_base64_forms(image_bytes(True)), strings(True)) if hostile else _base64_forms(images())


def strings(hostile: bool) -> st.SearchStrategy[str]:
    """Text; hostile: text with lone surrogates (Hypothesis leaves them out by default), odd constants."""
    if not hostile:
        return TEXT
    lone = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])  # a JSON "\ud800" escape, unpaired
    surrogates = st.builds(lambda a, s, b: a + s + b, TEXT, lone, TEXT)
    return st.one_of(surrogates, st.sampled_from(ODD_STRINGS))


def junk() -> st.SearchStrategy[JSONValue]:
    """Any JSON value, nested a few levels."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), strings(True))
    return st.recursive(scalars, _containers, max_leaves=12)


def _containers(c: st.SearchStrategy[JSONValue]) -> st.SearchStrategy[JSONValue]:
    return st.lists(c, max_size=3) | st.dictionaries(TEXT, c, max_size=3)


def _hint(name: str, hostile: bool) -> st.SearchStrategy[JSONValue] | None:
    """Fields worth aiming at, whose schema says only "string"."""
    if name == "images":
        return st.lists(base64_images(hostile), min_size=1, max_size=3)
    if name == "image":
        return base64_images(hostile)
    if name == "template":
        templates = st.sampled_from(["a {}", "a photo of a {}.", "{{literal}} {}", "{}"])
        braces = st.text(alphabet="{}0x:>.!r_ a", max_size=24)
        return st.one_of(braces, strings(True)) if hostile else templates
    if name == "model":
        models = st.sampled_from(MODELS)
        return st.one_of(st.sampled_from(["", "nope", "VIT", "cloob "]), strings(True)) if hostile else models
    return None


def _resolve(schema: dict, spec: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return schema


def from_schema(schema: dict, spec: dict, hostile: bool, name: str = "") -> st.SearchStrategy[JSONValue]:
    """Values of the shape ``schema`` describes (enums, bounds, required fields). Hostile: one field
    of an object hostile, the others valid; hostile strings, arrays one item too long or of hostile
    items, numbers out of range."""
    schema = _resolve(schema, spec)
    kind = schema.get("type")
    hint = _hint(name, hostile)
    if hint is not None:
        return hint
    if "anyOf" in schema:
        return st.one_of(*(from_schema(s, spec, hostile, name) for s in schema["anyOf"]))
    if "enum" in schema:
        return strings(True) if hostile else st.sampled_from(schema["enum"])
    if kind == "object":
        props, required = schema.get("properties", {}), set(schema.get("required", []))
        if hostile:
            return st.sampled_from(sorted(props)).flatmap(lambda k: _object(props, required, spec, k))
        return _object(props, required, spec, None)
    if kind == "array":
        lo, hi = schema.get("minItems", 0), schema.get("maxItems", 4)
        items = from_schema(schema.get("items", {}), spec, hostile)
        within = st.lists(items, min_size=max(lo, 1), max_size=min(hi, lo + 3))
        return st.one_of(within, items.map(lambda x: [x] * (hi + 1))) if hostile else within  # one too many
    if kind == "string":
        return strings(hostile)
    if kind == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        within = st.integers(None if lo is None else int(lo), None if hi is None else int(hi))
        return st.integers() if hostile else within
    if kind == "number":
        lo, hi = schema.get("minimum", schema.get("exclusiveMinimum")), schema.get("maximum")
        within = st.floats(lo, hi, allow_nan=False, exclude_min="exclusiveMinimum" in schema)
        return st.floats() if hostile else within
    return {"boolean": st.booleans(), "null": st.none()}.get(kind, junk())


def _object(props: dict, required: set[str], spec: dict, bad: str | None) -> st.SearchStrategy[dict]:
    """The object with every field valid but ``bad`` (always present); optional fields now and then."""
    fields = {k: from_schema(v, spec, k == bad, k) for k, v in props.items()}
    return st.fixed_dictionaries(
        {k: f for k, f in fields.items() if k in required or k == bad},
        optional={k: f for k, f in fields.items() if k not in required and k != bad},
    )


def broken(valid: st.SearchStrategy[dict], schema: dict) -> st.SearchStrategy[JSONValue]:
    """A body with one thing wrong: a field dropped, a field of the wrong type, a field the schema
    does not have; or any JSON at all."""
    props = sorted(schema.get("properties", {})) or ["x"]
    return st.one_of(
        st.builds(lambda d, i: {k: v for j, (k, v) in enumerate(d.items()) if j != i}, valid, st.integers(0, 5)),
        st.builds(lambda d, k, v: {**d, k: v}, valid, st.sampled_from(props), junk()),
        st.builds(lambda d, k, v: {**d, k: v}, valid, TEXT, junk()),
        junk(),
    )


def encoded(body: st.SearchStrategy[JSONValue]) -> st.SearchStrategy[bytes]:
    """JSON as a client writes it (escaped; NaN and Infinity as Python writes them), as raw UTF-8
    with lone surrogates (not valid UTF-8), random bytes, and deep nesting."""
    return st.one_of(
        body.map(lambda b: json.dumps(b).encode()),
        body.map(lambda b: json.dumps(b, ensure_ascii=False).encode("utf-8", "surrogatepass")),
        st.binary(max_size=200),
        st.integers(1, 50_000).map(lambda n: b"[" * n + b"]" * n),
    )


def keys(key: str) -> st.SearchStrategy[str | None]:
    """Mostly the right key; sometimes none, a wrong one, or one in the wrong header form."""
    return st.one_of(st.just(key), st.just(key), st.sampled_from([None, "", "wrong", f"Bearer {key}"]))


def _headers(key: str | None, content_type: str | None) -> dict[str, str]:
    headers = {} if content_type is None else {"content-type": content_type}
    return headers if key is None else {**headers, "x-api-key": key}


def _json_targets(path: str, schema: dict, spec: dict, key: str) -> dict[str, st.SearchStrategy[Request]]:
    props, required = schema.get("properties", {}), set(schema.get("required", []))

    def as_json(body: st.SearchStrategy[JSONValue]) -> st.SearchStrategy[Request]:
        return body.map(lambda b: Request(path, _headers(key, "application/json"), content=json.dumps(b).encode()))

    valid = _object(props, required, spec, None)
    ctype = st.one_of(st.just("application/json"), st.sampled_from(CONTENT_TYPES), st.none())
    odd = st.builds(lambda b, k, c: Request(path, _headers(k, c), content=b), encoded(valid), keys(key), ctype)
    return {
        "well-formed": as_json(valid),
        **{f"{name} hostile": as_json(_object(props, required, spec, name)) for name in props},
        "a field dropped, mistyped or unknown; junk JSON": as_json(broken(valid, schema)),
        "the envelope hostile": odd,
    }


def _form_value(v: JSONValue) -> str:
    return str(v).encode("utf-8", "replace").decode()  # a form field is text; httpx sends it as UTF-8


def _multipart_targets(path: str, schema: dict, spec: dict, key: str) -> dict[str, st.SearchStrategy[Request]]:
    props = {k: v for k, v in schema["properties"].items() if k != "files"}

    def form(bad: str | None) -> st.SearchStrategy[dict[str, str]]:
        return _object(props, set(), spec, bad).map(lambda d: {k: _form_value(v) for k, v in d.items()})

    def files(hostile: bool) -> st.SearchStrategy[list]:
        named = st.tuples(TEXT.map(lambda n: n or "f"), image_bytes(hostile), st.just("image/png"))
        return st.lists(named.map(lambda f: ("files", f)), min_size=0 if hostile else 1, max_size=3)

    def request(fs: list, data: dict[str, str], k: str | None) -> Request:
        return Request(path, _headers(k, None), files=fs, data=data)

    return {
        "well-formed": st.builds(request, files(False), form(None), st.just(key)),
        "files hostile": st.builds(request, files(True), form(None), st.just(key)),
        **{f"{name} hostile": st.builds(request, files(False), form(name), st.just(key)) for name in props},
        "the key hostile": st.builds(request, files(False), form(None), keys(key)),
    }


def targets(spec: dict, key: str) -> dict[str, st.SearchStrategy[Request]]:
    """For each POST endpoint in ``spec`` (the app's OpenAPI document): well-formed requests, each
    field hostile in turn (the others valid), a broken shape, a hostile envelope; by name."""
    out = {}
    for path, ops in spec["paths"].items():
        content = ops.get("post", {}).get("requestBody", {}).get("content", {})
        if "application/json" in content:
            found = _json_targets(path, _resolve(content["application/json"]["schema"], spec), spec, key)
        elif "multipart/form-data" in content:
            found = _multipart_targets(path, _resolve(content["multipart/form-data"]["schema"], spec), spec, key)
        else:
            continue
        out |= {f"POST {path}: {name}": strategy for name, strategy in found.items()}
    return out
