"""The ASGI application: API, console, ad and tracking endpoints, assembled from the domain folders."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from adstack import __version__
from adstack.core.db import domain_modules, import_all_models, make_engine, make_session_factory
from adstack.core.http import BodyLimits, StrictTransportSecurity, install_error_handlers, refuse_unstorable_text
from adstack.core.openapi import document_errors
from adstack.core.settings import Settings, get_settings, set_settings
from adstack.serving.fastpath import MAX_BODY_BYTES as MAX_AD_REQUEST_BYTES

Hook = Callable[[FastAPI], None]
# True: answered. False: passed on untouched. A callable: passed on, with this `receive` replaying the body the
# handler already read.
FastHandler = Callable[[dict[str, Any], Any, Any], Awaitable[Any]]


class Application(FastAPI):
    """The app, with a table of raw ASGI handlers by path that may answer a request before the framework does
    (the tracking pixels and the SDK ad request: see `tracking/fastpath.py`, `serving/fastpath.py`); whatever a
    handler does not recognise goes on to the documented route and its validation."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.fast_paths: dict[str, FastHandler] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            handler = self.fast_paths.get(scope["path"])
            if handler is not None:
                outcome = await handler(scope, receive, send)
                if outcome is True:
                    return
                if callable(outcome):
                    receive = outcome
        await super().__call__(scope, receive, send)


# Multipart framing and the form's other fields around a file.
FORM_SLACK = 64 * 1024
# Anonymous forms (sign-in, password reset) are a few short fields; under Starlette's 1 MiB spooling threshold.
ANONYMOUS_FORM_BYTES = 64 * 1024


def body_limits(settings: Settings) -> dict[str, Any]:
    """Form and multipart caps by route: files where a route takes one, short forms everywhere else."""
    document = settings.max_document_bytes + FORM_SLACK
    upload = settings.max_upload_bytes + FORM_SLACK
    return {
        "caps": [
            (r"/api/v1/accounts/\d+/documents(/\d+)?", document),
            (r"/api/v1/finance/top-up-requests", document),
            # These stream the body themselves under their own caps, with per-field refusals.
            (r"/api/v1/media", None),
            (r"/api/v1/audiences(/\d+)?/upload", None),
            (r"/console/register", document),
            (r"/console/accounts/\d+/(documents|sub-accounts)", document),
            (r"/console/finance/top-up-requests", document),
            (r"/console/audiences(/change)?", upload),
            (r"/console/ads/ad-groups/\d+/media", upload),
        ],
        "default_cap": settings.max_form_bytes,
        "anonymous_cap": ANONYMOUS_FORM_BYTES,
        "anonymous_routes": [r"/console/register"],
        "deadline_s": settings.body_deadline_s,
        "any_body_caps": [(r"/v1/ads", MAX_AD_REQUEST_BYTES)],
    }


SWAGGER_UI_DIR = Path(__file__).resolve().parent / "core" / "docs_assets" / "node_modules" / "swagger-ui-dist"
DOCS_STATIC = "/docs/static"


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the locked, integrity-checked swagger-ui-dist that scripts/setup.sh installs,
    not from a CDN that could serve anyone's script to a signed-in operator."""
    app.mount(DOCS_STATIC, StaticFiles(directory=SWAGGER_UI_DIR, check_dir=False), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js", swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png",
            # No badge fetched from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    set_settings(settings)
    import_all_models()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # As many request threads as pooled connections for them (see make_engine), so a request thread never
        # waits on the pool; session releases get their own limiter (see deps.get_session).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.db_pool_size
        app.state.release_limiter = anyio.CapacityLimiter(settings.db_pool_size)
        app.state.db_gate = anyio.Semaphore(settings.db_pool_size)
        for hook in app.state.on_startup:
            hook(app)
        try:
            yield
        finally:
            for hook in reversed(app.state.on_shutdown):
                hook(app)
            app.state.engine.dispose()

    app = Application(
        title="adstack",
        version=__version__,
        description="Self-hosted mobile advertising platform API.",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs from our own origin
        redoc_url=None,  # ReDoc would load its script and fonts from CDNs
        dependencies=[Depends(refuse_unstorable_text)],  # NUL and lone surrogates, refused before any route's own
    )
    install_docs(app)
    app.state.settings = settings
    app.state.engine = make_engine(settings.resolved_database_url, pool_size=settings.db_pool_size,
                                   pool_timeout=settings.db_pool_timeout_s)
    app.state.session_factory = make_session_factory(app.state.engine)
    app.state.on_startup = []
    app.state.on_shutdown = []
    install_error_handlers(app)
    app.add_middleware(BodyLimits, **body_limits(settings))
    app.add_middleware(StrictTransportSecurity, always=settings.hsts, max_age=settings.hsts_max_age,
                       trusted_proxies=settings.trusted_proxies)

    # On the event loop: a probe must not queue behind busy request threads.
    @app.get("/healthz", tags=["health"], summary="Liveness probe")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if settings.bench_routes:
        # The baseline benchmarks compare against: the cheapest route this app and server can answer, a bare
        # FastAPI route without the app's own dependencies (which the ad and tracking fast paths skip too).
        async def trivial() -> Response:
            return Response(status_code=204)

        app.router.routes.append(APIRoute("/bench/trivial", trivial, methods=["GET"], include_in_schema=False))

    for module in domain_modules("api"):
        for attribute in ("router", "public_router"):
            router = getattr(module, attribute, None)
            if router is not None:
                app.include_router(router)
        for router in getattr(module, "more_routers", ()):
            app.include_router(router)
        install: Hook | None = getattr(module, "install", None)
        if install is not None:
            install(app)
    document_errors(app)
    return app
