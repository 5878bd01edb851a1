"""Ray Serve application: a FastAPI ingress (``Gateway``, which decodes and preprocesses images)
in front of one ``Encoder`` deployment per served model (``@serve.batch`` forward passes).
``serve run serve/cpu.yaml`` or, in Python, ``serve.run(build_app({...}))``."""

import asyncio
import base64
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from vitforge.serving import guard
from vitforge.serving.decode import BadInput, open_image, read_payloads
from vitforge.serving.docs import add_offline_docs
from vitforge.serving.schema import (
    EmbeddingResponse,
    ErrorBody,
    ImageEmbeddingRequest,
    ModelInfo,
    SearchHit,
    SearchRequest,
    SearchResponse,
    TextEmbeddingRequest,
    ZeroShotRequest,
    ZeroShotResponse,
    ZeroShotResult,
)

ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 404, 408, 413, 415, 422, 431)}
MAX_PROMPTS = 4096  # labels x templates embedded for one zero-shot request


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=64, health_check_period_s=10)
class Encoder:
    """One exported model (a folder or ``models:/NAME@alias``), batched forward passes."""

    def __init__(
        self,
        model_ref: str,
        name: str,
        max_batch_size: int = 32,
        batch_wait_timeout_s: float = 0.005,
        gallery: str | None = None,
    ) -> None:
        from vitforge.eval.evaluate import resolve_export
        from vitforge.inference import load_encoder

        self.name = name
        self.model, self.card = load_encoder(resolve_export(model_ref))
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        self.image_text = self.card["kind"] == "image_text"
        self._embed.set_max_batch_size(max_batch_size)
        self._embed.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.gallery = _load_gallery(gallery) if gallery else None

    def info(self) -> dict[str, Any]:
        dims = int(
            self._forward(torch.zeros(1, 3, self.card["model"]["img_size"], self.card["model"]["img_size"])).shape[1]
        )
        return {
            "name": self.name,
            "kind": self.card["kind"],
            "stage": self.card.get("stage", ""),
            "version": str(self.card.get("mlflow_run_id") or self.card.get("run") or self.card.get("stage")),
            "dims": dims,
            "img_size": self.card["model"]["img_size"],
            "normalization": self.card["normalization"],
            "gallery_size": 0 if self.gallery is None else int(self.gallery["embeddings"].shape[0]),
        }

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        from vitforge.inference import embed

        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=self.device.type == "cuda"):
            out = embed(self.model, x.to(self.device), self.card["model"]["pool"])
        return torch.nn.functional.normalize(out.float(), dim=-1).cpu()

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _embed(self, images: list[torch.Tensor]) -> list[np.ndarray]:
        return list(self._forward(torch.stack(images)).numpy())  # one (B, 3, S, S) forward

    async def embed_images(self, images: list[torch.Tensor]) -> np.ndarray:
        """Preprocessed (3, S, S) tensors -> (N, D); each image joins the shared batch queue."""
        return np.stack(await asyncio.gather(*(self._embed(x) for x in images)))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        if not self.image_text:
            raise BadInput(f"model {self.name!r} is image-only: it has no text tower")
        from vitforge.data.tokenizers import tokenizer_from_card

        tok = tokenizer_from_card(self.card)
        with torch.inference_mode():
            return self.model.encode_text(tok(texts).to(self.device)).float().cpu().numpy()

    def search(self, query: np.ndarray, k: int, method: str, beta: float) -> list[dict]:
        from vitforge.methods.cloob import hopfield_retrieval

        if self.gallery is None:
            raise BadInput(f"model {self.name!r} serves no gallery; start it with a gallery file", 404)
        mem = self.gallery["embeddings"]  # (M, D), L2-normalized
        q = torch.nn.functional.normalize(torch.as_tensor(query, dtype=torch.float32).view(1, -1), dim=-1)
        if q.shape[1] != mem.shape[1]:
            raise BadInput(f"query has {q.shape[1]} dims, the gallery {mem.shape[1]}")
        state = hopfield_retrieval(q, mem, beta) if method == "hopfield" else q  # the training update
        scores, idx = (state @ mem.T)[0].topk(min(k, mem.shape[0]))
        meta = self.gallery["meta"]
        return [
            {"index": int(i), "score": float(s), "label": meta["labels"][int(i)], "caption": meta["captions"][int(i)]}
            for s, i in zip(scores, idx, strict=True)
        ]

    def check_health(self) -> None:
        """Serve marks the replica unhealthy (and replaces it) when the model no longer works."""
        size = self.card["model"]["img_size"]
        out = self._forward(torch.zeros(1, 3, size, size))
        if not torch.isfinite(out).all():
            raise RuntimeError(f"model {self.name} produces non-finite embeddings")


def _load_gallery(path: str) -> dict[str, Any]:
    from vitforge.serving.gallery import load_gallery

    return load_gallery(path)


app = FastAPI(
    title="vitforge embeddings",
    description="Image and text embeddings, zero-shot classification and Hopfield search over trained ViTs.",
    version="1",
    docs_url=None,  # add_offline_docs serves it from the package: FastAPI's default loads Swagger UI from a CDN
)
add_offline_docs(app)

app.add_middleware(guard.RequestGuard)  # key, content type and size before any body is parsed


@app.exception_handler(BadInput)
async def _bad_input(request: Request, exc: BadInput) -> JSONResponse:
    return JSONResponse(status_code=exc.status, content={"error": str(exc)})


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI's own refusals (unknown path, wrong method, unparsable body or form) in the same shape."""
    return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail)}, headers=exc.headers)


@app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", []))
    return JSONResponse(status_code=422, content={"error": f"invalid request: {where}: {first.get('msg', exc)}"})


# The ingress mostly waits on I/O and the encoders: a fraction of a CPU.
@serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(app)
class Gateway:
    """Routes by model name, checks the API key and limits, decodes and preprocesses images."""

    def __init__(
        self,
        encoders: dict[str, Any],
        default_model: str | None = None,
        api_key_env: str = "VITFORGE_API_KEY",
        max_images: int = 64,
        max_body_bytes: int = 32 * 2**20,
        max_pixels: int = 4096 * 4096,
        max_request_pixels: int = 64 * 2**20,
        read_timeout_s: float = 30.0,
    ) -> None:
        self.encoders = encoders
        self.default = default_model or next(iter(encoders))
        key = os.environ.get(api_key_env) or None
        guard.configure(api_key=key, max_body=max_body_bytes, read_timeout_s=read_timeout_s)
        self.max_images, self.max_pixels, self.max_request_pixels = max_images, max_pixels, max_request_pixels
        self._info: dict[str, dict] = {}
        # Decoding runs off the event loop (a large image held /healthz and every other request
        # for seconds: small-request p99 26x under large images, bench/serve_mix), on one thread,
        # so at most one full-size decode is alive in the gateway whatever the concurrency.
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vitforge-decode")

    # -- helpers ------------------------------------------------------------------------------

    async def _model(self, name: str | None) -> tuple[str, Any, dict]:
        name = self.default if name is None else name  # "" is a wrong name, not the default
        if name not in self.encoders:
            raise BadInput(f"unknown model {name!r}; served: {', '.join(self.encoders)}", 404)
        if name not in self._info:
            self._info[name] = await self.encoders[name].info.remote()
        return name, self.encoders[name], self._info[name]

    def _count(self, n: int) -> None:
        """Checked before anything is decoded."""
        if n == 0:
            raise BadInput("no images: send at least one")
        if n > self.max_images:
            raise BadInput(f"{n} images exceed the limit of {self.max_images} per request", 413)

    async def _tensors(self, payloads: list[bytes] | list[str], info: dict, field: str = "images") -> list:
        """Uploaded bytes or base64 strings -> model inputs; every header checked before any decode.
        A small request (<= 256 KiB, <= 512² pixels, no progressive JPEG: a few ms) is read on the
        event loop, so it never waits behind a large image; a larger one on the decoder thread."""
        self._count(len(payloads))
        limits = (field, self.max_pixels, self.max_request_pixels)
        run = functools.partial(asyncio.get_running_loop().run_in_executor, self._decoder)
        if sum(map(len, payloads)) > 256 * 2**10:
            p = await run(read_payloads, payloads, *limits)
        else:
            p = read_payloads(payloads, *limits)
            if p.pixels <= 512 * 512 and not p.progressive:
                return self._decode(p.raws, p.where, info)
        return await run(self._decode, p.raws, p.where, info)

    def _decode(self, raws: list[bytes], where: list[str], info: dict) -> list[torch.Tensor]:
        from vitforge.inference import preprocess

        card = {"model": {"img_size": info["img_size"]}, "normalization": info["normalization"]}
        # One image at a time: only one full-size decode is alive, whatever the count (memory).
        return [preprocess([open_image(r, w, self.max_pixels)], card)[0] for r, w in zip(raws, where, strict=True)]

    @staticmethod
    def _need_text(name: str, info: dict) -> None:
        if info["kind"] != "image_text":
            raise BadInput(f"model {name!r} is image-only: it has no text tower")

    @staticmethod
    def _encode(emb: np.ndarray, encoding: str) -> list:
        if encoding == "base64_float16":
            return [base64.b64encode(row.astype("<f2").tobytes()).decode() for row in emb]
        return emb.astype(np.float32).tolist()

    # -- endpoints ----------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz(self) -> dict:
        """Liveness: the ingress answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorBody}})
    async def readyz(self) -> JSONResponse:
        """Readiness: every model is loaded and answers."""
        try:
            for name in self.encoders:
                await self._model(name)
        except Exception as e:
            return JSONResponse(status_code=503, content={"error": f"not ready: {e}"})
        return JSONResponse({"status": "ready", "models": list(self.encoders)})

    @app.get("/v1/models", response_model=list[ModelInfo], responses=ERRORS)
    async def models(self) -> list[ModelInfo]:
        out = []
        for name in self.encoders:
            _, _, info = await self._model(name)
            out.append(ModelInfo(**{k: info[k] for k in ModelInfo.model_fields}))
        return out

    @app.post("/v1/embeddings/image", response_model=EmbeddingResponse, responses=ERRORS)
    async def embed_image(self, body: ImageEmbeddingRequest) -> EmbeddingResponse:
        """L2-normalized embeddings of base64 images (JSON)."""
        name, handle, info = await self._model(body.model)
        emb = await handle.embed_images.remote(await self._tensors(body.images, info))
        return EmbeddingResponse(
            model=name, version=info["version"], dims=emb.shape[1], encoding=body.encoding,
            embeddings=self._encode(emb, body.encoding),
        )  # fmt: skip

    @app.post("/v1/embeddings/image/upload", response_model=EmbeddingResponse, responses=ERRORS)
    async def embed_upload(
        self,
        files: list[UploadFile] = File(..., description="Image files (multipart/form-data)."),
        model: str | None = Form(None),
        encoding: str = Form("float32"),
    ) -> EmbeddingResponse:
        """The same as /v1/embeddings/image for multipart uploads."""
        if encoding not in ("float32", "base64_float16"):
            raise BadInput("encoding must be 'float32' or 'base64_float16'")
        name, handle, info = await self._model(model)
        self._count(len(files))
        raws = [await f.read() for f in files]
        emb = await handle.embed_images.remote(await self._tensors(raws, info, "files"))
        return EmbeddingResponse(
            model=name, version=info["version"], dims=emb.shape[1], encoding=encoding,
            embeddings=self._encode(emb, encoding),
        )  # fmt: skip

    @app.post("/v1/embeddings/text", response_model=EmbeddingResponse, responses=ERRORS)
    async def embed_text(self, body: TextEmbeddingRequest) -> EmbeddingResponse:
        """Text embeddings from an image-text (CLOOB/CLIP) model's text tower."""
        if not body.texts:
            raise BadInput("no texts: send at least one")
        if len(body.texts) > self.max_images:
            raise BadInput(f"{len(body.texts)} texts exceed the limit of {self.max_images}", 413)
        name, handle, info = await self._model(body.model)
        self._need_text(name, info)
        emb = await handle.embed_texts.remote(body.texts)
        return EmbeddingResponse(
            model=name, version=info["version"], dims=emb.shape[1], encoding=body.encoding,
            embeddings=self._encode(emb, body.encoding),
        )  # fmt: skip

    @app.post("/v1/classify/zero-shot", response_model=ZeroShotResponse, responses=ERRORS)
    async def zero_shot(self, body: ZeroShotRequest) -> ZeroShotResponse:
        """Scores of each image against prompts built from the candidate labels (softmax over labels)."""
        templates = body.templates or [body.template]  # the schema allows one bare {} in each
        prompts = [t.format(lb) for lb in body.labels for t in templates]
        if len(prompts) > MAX_PROMPTS:
            raise BadInput(f"{len(body.labels)} labels x {len(templates)} templates exceed {MAX_PROMPTS} prompts", 413)
        name, handle, info = await self._model(body.model)
        self._need_text(name, info)
        tensors = await self._tensors(body.images, info)
        img = torch.as_tensor(await handle.embed_images.remote(tensors))
        txt = torch.as_tensor(await handle.embed_texts.remote(prompts)).view(len(body.labels), len(templates), -1)
        classes = torch.nn.functional.normalize(txt.float().mean(1), dim=-1)  # (C, E): the prompts averaged
        probs = (100.0 * img @ classes.T).softmax(dim=-1)
        results = [
            ZeroShotResult(
                label=body.labels[int(p.argmax())], scores=dict(zip(body.labels, map(float, p), strict=True))
            )
            for p in probs
        ]
        return ZeroShotResponse(model=name, results=results)

    @app.post("/v1/search", response_model=SearchResponse, responses=ERRORS)
    async def search(self, body: SearchRequest) -> SearchResponse:
        """Nearest gallery items to an image or text query, by one modern-Hopfield update or cosine."""
        if (body.image is None) == (body.text is None):
            raise BadInput("send exactly one of 'image' or 'text'")
        name, handle, info = await self._model(body.model)
        if info["gallery_size"] == 0:
            raise BadInput(f"model {name!r} serves no gallery (build one with `vitforge serve gallery`)", 404)
        if body.text is not None:
            self._need_text(name, info)
        if body.image is not None:
            q = await handle.embed_images.remote(await self._tensors([body.image], info, "image"))
        else:
            q = await handle.embed_texts.remote([body.text])
        hits = await handle.search.remote(q[0], body.k, body.method, body.beta)
        return SearchResponse(model=name, method=body.method, hits=[SearchHit(**h) for h in hits])


def build_app(args: dict[str, Any]):
    """Application builder for ``serve run``/``serve deploy`` configs. args: ``models``: list of
    ``{name, model_ref, max_batch_size?, batch_wait_timeout_s?, gallery?, num_replicas?,
    autoscaling_config?, num_cpus?, num_gpus?}``; optional ``default_model``, ``api_key_env``,
    ``max_images``, ``max_body_bytes``, ``max_pixels``, ``max_request_pixels``, ``read_timeout_s``
    (the longest wait for a chunk of a request body), ``gateway_env`` (the ingress's environment)."""
    models = args.get("models") or []
    if not models:
        raise ValueError("serve args: 'models' must list at least one {name, model_ref}")
    encoders = {}
    for m in models:
        opts: dict[str, Any] = {"name": f"encoder-{m['name']}"}
        batch = int(m.get("max_batch_size", 32))
        # Batches only fill if a replica may hold at least a batch of requests.
        opts["max_ongoing_requests"] = max(int(m.get("max_ongoing_requests", 2 * batch)), batch)
        if "autoscaling_config" in m:
            opts["autoscaling_config"] = m["autoscaling_config"]
        else:
            opts["num_replicas"] = int(m.get("num_replicas", 1))
        opts["ray_actor_options"] = {"num_cpus": float(m.get("num_cpus", 1)), "num_gpus": float(m.get("num_gpus", 0))}
        encoders[m["name"]] = Encoder.options(**opts).bind(
            m["model_ref"], m["name"], batch, float(m.get("batch_wait_timeout_s", 0.005)), m.get("gallery")
        )
    gateway = Gateway
    if args.get("gateway_env"):  # e.g. the API key of `serve up --api-key-file`, for this app only
        env = {"env_vars": args["gateway_env"]}
        gateway = Gateway.options(ray_actor_options={"num_cpus": 0.25, "runtime_env": env})
    return gateway.bind(
        encoders,
        args.get("default_model"),
        args.get("api_key_env", "VITFORGE_API_KEY"),
        int(args.get("max_images", 64)),
        int(args.get("max_body_bytes", 32 * 2**20)),
        int(args.get("max_pixels", 4096 * 4096)),
        int(args.get("max_request_pixels", 64 * 2**20)),
        float(args.get("read_timeout_s", 30.0)),
    )
