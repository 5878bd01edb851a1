"""Real Ray Serve on 127.0.0.1, real HTTP: embeddings, zero-shot, search, bad inputs, API key, load.
Hostile requests (surrogates, templates, body and header limits, ...): test_serving_hostile.py."""

import asyncio
import base64
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from integration.serving_app import export_models, start_serve, two_models
from vitforge.inference import encode_images, load_encoder

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def png_b64(arr: np.ndarray, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def images(n: int, size: int = 24, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def served(ray_cluster, tmp_path_factory):
    """Two exported models (image-only ViT, image-text CLOOB model) behind one Serve app."""
    from ray import serve

    exports = export_models(tmp_path_factory.mktemp("serve"))
    url = start_serve({"models": two_models(exports), "max_images": 8, "max_pixels": 512 * 512})
    yield {"url": url, **exports}
    serve.shutdown()  # frees the CPUs the Train tests sharing this cluster need


def post(served, path: str, **kw) -> httpx.Response:
    with httpx.Client(base_url=served["url"], timeout=60) as c:
        return c.post(path, **kw)


def test_image_embeddings_equal_in_process(served) -> None:
    imgs = images(3)
    r = post(served, "/v1/embeddings/image", json={"images": [png_b64(a) for a in imgs], "model": "vit"})
    assert r.status_code == 200, r.text
    body = r.json()
    model, card = load_encoder(served["vit"])
    local = encode_images(model, card, np.stack(imgs)).numpy()
    assert body["dims"] == 32 and body["model"] == "vit"
    assert np.allclose(np.array(body["embeddings"]), local, atol=1e-5)
    # Photos 3x the model's size or more are shrunk as uint8 before becoming float: the same there.
    big = images(2, size=80, seed=1)
    r = post(served, "/v1/embeddings/image", json={"images": [png_b64(a) for a in big], "model": "vit"})
    assert r.status_code == 200, r.text
    assert np.allclose(np.array(r.json()["embeddings"]), encode_images(model, card, np.stack(big)).numpy(), atol=1e-5)
    # float16 base64 rows decode to the same embeddings, rounded.
    r16 = post(served, "/v1/embeddings/image", json={"images": [png_b64(imgs[0])], "encoding": "base64_float16"})
    row = np.frombuffer(base64.b64decode(r16.json()["embeddings"][0]), dtype="<f2")
    assert np.allclose(row, local[0], atol=2e-3)
    # Multipart upload, JPEG and WebP too.
    files = [("files", ("a.png", base64.b64decode(png_b64(imgs[1])), "image/png"))]
    up = post(served, "/v1/embeddings/image/upload", files=files, data={"model": "vit"})
    assert up.status_code == 200 and np.allclose(up.json()["embeddings"][0], local[1], atol=1e-5)
    for fmt in ("JPEG", "WEBP"):
        assert post(served, "/v1/embeddings/image", json={"images": [png_b64(imgs[0], fmt)]}).status_code == 200


def test_text_zero_shot_search_and_models(served) -> None:
    model, card = load_encoder(served["cloob"])
    r = post(served, "/v1/embeddings/text", json={"texts": ["a red circle", "a blue star"], "model": "cloob"})
    assert r.status_code == 200, r.text
    from vitforge.data.tokenizers import tokenizer_from_card

    with torch.no_grad():
        local = model.encode_text(tokenizer_from_card(card)(["a red circle", "a blue star"]))
    assert np.allclose(np.array(r.json()["embeddings"]), local.numpy(), atol=1e-5)
    zs = post(served, "/v1/classify/zero-shot", json={"images": [png_b64(images(1)[0])], "labels": ["circle", "star"],
                                                    "model": "cloob"})  # fmt: skip
    assert zs.status_code == 200 and abs(sum(zs.json()["results"][0]["scores"].values()) - 1) < 1e-4
    body = {"images": [png_b64(images(1)[0])], "labels": ["circle", "star"], "model": "cloob"}
    ens = post(served, "/v1/classify/zero-shot", json={**body, "templates": ["a {}", "a photo of a {}."]})
    assert ens.status_code == 200 and abs(sum(ens.json()["results"][0]["scores"].values()) - 1) < 1e-4
    assert ens.json()["results"][0]["scores"] != zs.json()["results"][0]["scores"]  # the prompts are averaged
    many = post(served, "/v1/classify/zero-shot", json={"images": [png_b64(images(1)[0])], "model": "cloob",
                "labels": [f"c{i}" for i in range(1000)], "templates": ["a {}"] * 5})  # fmt: skip
    assert many.status_code == 413 and "prompts" in many.json()["error"]
    from vitforge.data import iter_rows, load_source

    first = next(iter_rows(load_source("shapes", "test", builtin_options={"n": 100, "size": 16})))["image"][0]
    for method in ("cosine", "hopfield"):
        s = post(served, "/v1/search", json={"image": base64.b64encode(first).decode(), "k": 3, "method": method,
                                             "model": "cloob"})  # fmt: skip
        assert s.status_code == 200, s.text
        hits = s.json()["hits"]
        assert len(hits) == 3 and hits[0]["caption"]
        if method == "cosine":
            assert hits[0]["index"] == 0 and hits[0]["score"] > 0.999  # the query itself is in the gallery
    t = post(served, "/v1/search", json={"text": "a small red circle", "model": "cloob", "k": 2})
    assert t.status_code == 200 and len(t.json()["hits"]) == 2
    with httpx.Client(base_url=served["url"]) as c:
        models = {m["name"]: m for m in c.get("/v1/models").json()}
        assert models["cloob"]["kind"] == "image_text" and models["cloob"]["gallery_size"] == 20
        assert c.get("/healthz").json() == {"status": "ok"}
        assert "/v1/search" in c.get("/openapi.json").json()["paths"]
        # /docs works offline: Swagger UI's script and style come from the package, not a CDN.
        page = c.get("/docs").text
        assert "cdn" not in page.lower() and "/docs-assets/swagger-ui-bundle.js" in page
        js = c.get("/docs-assets/swagger-ui-bundle.js")
        assert js.status_code == 200 and len(js.content) > 100_000
        assert c.get("/docs-assets/..%2Fsecret").status_code == 404


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "says"),
    [
        (
            "/v1/embeddings/image",
            {"json": {"images": [base64.b64encode(b"not an image").decode()]}},
            400,
            "not a readable",
        ),
        ("/v1/embeddings/image", {"json": {"images": ["***not base64***"]}}, 400, "not valid base64"),
        ("/v1/embeddings/image", {"json": {"images": []}}, 400, "no images"),
        ("/v1/embeddings/image", {"json": {"images": ["x"] * 9}}, 413, "exceed the limit of 8"),
        ("/v1/embeddings/image", {"json": {"images": ["AAAA"], "model": "nope"}}, 404, "unknown model 'nope'"),
        ("/v1/embeddings/image", {"json": {"pictures": []}}, 422, "invalid request"),
        ("/v1/embeddings/text", {"json": {"texts": ["hi"], "model": "vit"}}, 400, "image-only"),
        ("/v1/search", {"json": {"text": "hi", "model": "vit"}}, 404, "no gallery"),
        ("/v1/search", {"json": {"model": "cloob"}}, 400, "exactly one"),
    ],
)
def test_bad_input_gets_4xx_and_server_keeps_serving(served, path, kwargs, status, says) -> None:
    r = post(served, path, **kwargs)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]
    good = post(served, "/v1/embeddings/image", json={"images": [png_b64(images(1)[0])]})
    assert good.status_code == 200


def test_truncated_huge_and_gif_images(served) -> None:
    raw = base64.b64decode(png_b64(images(1, 64)[0], "JPEG"))
    bad = {
        "truncated": (base64.b64encode(raw[: len(raw) // 2]).decode(), 400),
        "huge": (png_b64(np.zeros((600, 600, 3), np.uint8)), 413),
    }
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    bad["gif"] = (base64.b64encode(gif.getvalue()).decode(), 415)
    for name, (b64, status) in bad.items():
        r = post(served, "/v1/embeddings/image", json={"images": [b64]})
        assert r.status_code == status, (name, r.text)
    assert post(served, "/v1/embeddings/image", json={"images": [png_b64(images(1)[0])]}).status_code == 200


def test_users_images_orientation_mpo_and_wrapped_base64(served) -> None:
    model, card = load_encoder(served["vit"])
    a = images(1, 24)[0][:, :16]  # 24 high, 16 wide: the orientation matters
    upright = encode_images(model, card, np.ascontiguousarray(np.rot90(a, -1))[None]).numpy()[0]
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display", as phones write portrait photos
    Image.fromarray(a).save(buf, format="PNG", exif=exif)
    r = post(served, "/v1/embeddings/image", json={"images": [base64.b64encode(buf.getvalue()).decode()]})
    assert r.status_code == 200 and np.allclose(r.json()["embeddings"][0], upright, atol=1e-5), r.text
    mpo = io.BytesIO()
    Image.fromarray(images(1)[0]).save(mpo, format="MPO", save_all=True, append_images=[Image.new("RGB", (24, 24))])
    r = post(served, "/v1/embeddings/image", json={"images": [base64.b64encode(mpo.getvalue()).decode()]})
    assert r.status_code == 200, r.text
    wrapped = base64.encodebytes(base64.b64decode(png_b64(images(1)[0]))).decode()  # a newline every 76
    assert "\n" in wrapped
    r = post(served, "/v1/embeddings/image", json={"images": [wrapped], "model": "vit"})
    plain = post(served, "/v1/embeddings/image", json={"images": [png_b64(images(1)[0])], "model": "vit"})
    assert r.status_code == 200 and r.json()["embeddings"] == plain.json()["embeddings"]


def test_embed_folder_skips_bad_files_and_names_them(served, tmp_path) -> None:
    from vitforge.serving.client import Client, embed_folder

    imgs = images(3)
    for i, a in enumerate(imgs):
        Image.fromarray(a).save(tmp_path / f"{i}.png")
    (tmp_path / "1b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with Client(served["url"]) as c:
        paths, emb, skipped = embed_folder(c, tmp_path, batch_size=8, model="vit")
    assert [Path(p).name for p in paths] == ["0.png", "1.png", "2.png"] and emb.shape == (3, 32)
    assert len(skipped) == 1 and skipped[0][0].endswith("1b_broken.png") and "not a readable" in skipped[0][1]
    model, card = load_encoder(served["vit"])
    # The client asks for float16 rows (bandwidth): equal up to float16 rounding.
    assert np.allclose(emb, encode_images(model, card, np.stack(imgs)).numpy(), atol=2e-3)


def test_api_key_enforced(served) -> None:
    from ray import serve

    from vitforge.serving.app import Encoder, Gateway

    enc = Encoder.options(name="encoder-secure", ray_actor_options={"num_cpus": 0.5}).bind(str(served["vit"]), "vit", 4)
    gw = Gateway.options(ray_actor_options={"num_cpus": 0.25, "runtime_env": {"env_vars": {"SECURE_KEY": "s3cret"}}})
    serve.run(gw.bind({"vit": enc}, None, "SECURE_KEY"), name="secure", route_prefix="/secure", blocking=False)
    body = {"images": [png_b64(images(1)[0])]}
    with httpx.Client(base_url=served["url"], timeout=60) as c:
        for _ in range(120):
            if c.get("/secure/healthz").status_code == 200:
                break
            asyncio.run(asyncio.sleep(0.5))
        assert c.post("/secure/v1/embeddings/image", json=body).status_code == 401
        # Authentication comes before parsing: a malformed body without a key is a 401, not a 422/415.
        assert c.post("/secure/v1/embeddings/image", content=b"{not json").status_code == 401
        assert c.get("/secure/v1/models").status_code == 401
        assert c.get("/secure/healthz").status_code == 200  # probes need no key
        assert c.post("/secure/v1/embeddings/image", json=body, headers={"x-api-key": "wrong"}).status_code == 401
        ok = c.post("/secure/v1/embeddings/image", json=body, headers={"x-api-key": "s3cret"})
        assert ok.status_code == 200
        assert (
            c.post("/secure/v1/embeddings/image", json=body, headers={"authorization": "Bearer s3cret"}).status_code
            == 200
        )
    serve.delete("secure")


def test_concurrent_load_has_no_errors(served) -> None:
    payload = {"images": [png_b64(images(1, seed=7)[0])], "model": "vit"}

    async def run(n: int, concurrency: int) -> list[int]:
        sem = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=served["url"], timeout=120, limits=limits) as c:

            async def one() -> int:
                async with sem:
                    return (await c.post("/v1/embeddings/image", json=payload)).status_code

            return await asyncio.gather(*(one() for _ in range(n)))

    codes = asyncio.run(run(2000, 32))
    assert codes.count(200) == 2000, {c: codes.count(c) for c in set(codes)}
