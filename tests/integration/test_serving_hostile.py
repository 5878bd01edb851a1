"""The server under attack, over real HTTP: a corpus of hostile requests (each with the answers it
may give) and property-based fuzzing from the API's own OpenAPI schema. Every answer is a 2xx or a
4xx with a JSON body, never a 5xx, and afterwards the server gives the same embedding as before."""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx
import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from integration.hostile_corpus import CORPUS, KEY, READ_TIMEOUT_S, Hostile, b64, good_image, send
from integration.openapi_fuzz import Request, targets
from integration.serving_app import export_models, start_serve, two_models

pytestmark = [pytest.mark.ray, pytest.mark.slow]

EXAMPLES_PER_TARGET = 6  # x 33 targets: about 200 requests
OUTCOMES: Counter[str] = Counter()  # the corpus's answers by class, summed up at the end of the module
# Requests over HTTP take longer than Hypothesis expects of a test; a few bodies are big on purpose.
SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]


def summary(by_class: Counter[str]) -> str:
    """``N requests: X 2xx, Y 4xx, Z 5xx``."""
    return f"{by_class.total()} requests: " + ", ".join(f"{by_class[k]} {k}" for k in ("2xx", "4xx", "5xx"))


@pytest.fixture(scope="module")
def attacked(ray_cluster, tmp_path_factory):
    """The shipped limits, an API key and a short body read timeout; the embedding of a known image."""
    from ray import serve

    exports = export_models(tmp_path_factory.mktemp("hostile"))
    # The image-text model by default: a request that names none reaches every endpoint's code.
    url = start_serve({"models": two_models(exports), "default_model": "cloob", "api_key_env": "HOSTILE_KEY",
                       "gateway_env": {"HOSTILE_KEY": KEY}, "read_timeout_s": READ_TIMEOUT_S})  # fmt: skip
    yield {"url": url, "reference": known_embedding(url)}
    if OUTCOMES:
        print(f"\nhostile corpus: {summary(OUTCOMES)}")
    serve.shutdown()  # frees the CPUs the Train tests sharing this cluster need


def known_embedding(url: str) -> np.ndarray:
    r = httpx.post(f"{url}/v1/embeddings/image", json={"images": [b64(good_image(7))], "model": "vit"},
                   headers={"x-api-key": KEY}, timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    return np.array(r.json()["embeddings"][0])


def assert_same_embedding(attacked) -> None:
    np.testing.assert_allclose(known_embedding(attacked["url"]), attacked["reference"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_hostile_request_gets_its_answer(attacked, case: Hostile) -> None:
    answer = send(attacked["url"], case)
    OUTCOMES[f"{answer.status // 100}xx"] += 1
    assert answer.status in case.expect, (answer.status, answer.body[:300])
    if not case.by_proxy:  # the proxy's HTTP parser answers in plain text; the app always in JSON
        assert answer.content_type == "application/json", answer.content_type
        if answer.status >= 400:
            assert case.says in answer.error(), answer.error()
    assert_same_embedding(attacked)


def test_fuzzed_requests_from_the_openapi_schema(attacked) -> None:
    """Each POST endpoint: well-formed requests, each field hostile in turn, a broken shape, a hostile
    envelope (``openapi_fuzz.targets``), a few examples each, the same ones on every run."""
    url = attacked["url"]
    spec = httpx.get(f"{url}/openapi.json", timeout=60).json()
    seen: Counter[int] = Counter()
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, timeout=120) as client:
        for name, strategy in targets(spec, KEY).items():
            fuzz(client, spec, name, strategy, seen)
    by_class = Counter(f"{s // 100}xx" for s in seen.elements())
    print(f"\nfuzz: {summary(by_class)} in {time.perf_counter() - t0:.1f} s; statuses {dict(sorted(seen.items()))}")
    assert by_class["2xx"] > 0 and by_class["4xx"] > 0  # the generator reaches both sides of the API
    assert_same_embedding(attacked)


def fuzz(client: httpx.Client, spec: dict, name: str, strategy, seen: Counter[int]) -> None:
    @settings(max_examples=EXAMPLES_PER_TARGET, deadline=None, derandomize=True, database=None,
              suppress_health_check=SLOW_IS_FINE)  # fmt: skip
    @given(req=strategy)
    def answers_cleanly(req: Request) -> None:
        r = client.post(req.path, content=req.content, files=req.files, data=req.data, headers=req.headers)
        seen[r.status_code] += 1
        assert r.status_code < 500, (name, r.text[:500])
        assert r.headers.get("content-type") == "application/json", (name, r.headers)
        documented(spec, req.path, r.status_code, json.loads(r.content))

    answers_cleanly()


def documented(spec: dict, path: str, status: int, body: object) -> None:
    """The answer has the shape the schema documents for that status (when it documents one)."""
    response = spec["paths"][path]["post"]["responses"].get(str(status))
    if response is None:
        return
    schema = response["content"]["application/json"]["schema"]
    jsonschema.validate(body, {**schema, "components": spec["components"]})
