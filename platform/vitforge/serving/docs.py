"""``/docs`` on an offline cluster: Swagger UI's script and style come from the swagger-ui-bundle
package, not FastAPI's default CDN (a blank page where the cluster cannot reach the internet)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse
from swagger_ui_bundle import swagger_ui_path

from vitforge.serving.decode import BadInput

ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")


def add_offline_docs(app: FastAPI) -> None:
    """``/docs`` and ``/docs-assets/{name}`` on ``app`` (which was built with ``docs_url=None``)."""

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request):
        root = request.scope.get("root_path", "").rstrip("/")  # a route prefix (serve run ... /embed)
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title=app.title,
            swagger_js_url=f"{root}/docs-assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs-assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs-assets/favicon-32x32.png",
        )

    @app.get("/docs-assets/{name}", include_in_schema=False)
    async def docs_asset(name: str):
        if name not in ASSETS:
            raise BadInput(f"no such asset {name!r}", 404)
        return FileResponse(f"{swagger_ui_path}/{name}")
