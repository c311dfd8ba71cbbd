"""Composition root: `create_app(settings)` builds the whole HTTP application.

Nothing is created at import time. The server (`kunde serve`), the tests and the
benchmarks all call `create_app`; `asgi()` is the factory granian imports.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware.session.client_side import CookieBackendConfig
from litestar.openapi import OpenAPIConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

import kunde
from kunde.access.guard import authorize_request, check_routes_declare_access
from kunde.features import Feature, all_features
from kunde.kernel import Kernel, close_kernel, open_kernel
from kunde.ops.logs import configure_logging
from kunde.ops.metrics import Metrics
from kunde.ops.middleware import front_door
from kunde.runtime import Background
from kunde.settings import Settings, load_settings
from kunde.web.problems import EXCEPTION_HANDLERS

PACKAGE_ROOT = Path(kunde.__file__).parent
# Machine-to-machine paths: authenticated by headers, so no CSRF token and no session.
API_PATHS = ["^/v1/", "^/webhooks/", "^/health/", "^/metrics$", "^/openapi.json$"]


def provide_kernel(state: State) -> Kernel:
    kernel: Kernel = state.kernel
    return kernel


def create_app(
    settings: Settings | None = None,
    *,
    features: Sequence[Feature] | None = None,
    kernel: Kernel | None = None,
) -> Litestar:
    """Build the app. Pass ``kernel`` to share one already opened (tests, demo)."""
    settings = settings or (kernel.settings if kernel else load_settings())
    feats = list(features if features is not None else all_features())
    metrics = kernel.metrics if kernel else Metrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        own = kernel is None
        k = kernel or await open_kernel(settings)
        k.metrics = metrics
        app.state.kernel = k
        for f in feats:
            if f.startup:
                await f.startup(k)
        background = Background(k, feats) if settings.run_consumers else None
        if background:
            await background.start()
        app.state.background = background
        if own:
            # A server process: what start-up built (modules, settings, models) lives as
            # long as the process, so it leaves the collector's generations and a full
            # collection during traffic walks only what requests allocated (80-140 ms
            # per pass before: the p99 of the recommendations endpoint). Not for apps
            # around a kernel of the caller's (tests), whose objects come and go.
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if background:
                await background.stop()
            for f in reversed(feats):
                if f.shutdown:
                    await f.shutdown(k)
            if own:
                await close_kernel(k)

    secret = hashlib.sha256(settings.secret_key.encode()).digest()
    app = Litestar(
        route_handlers=[
            *[r for f in feats for r in f.routes],
            create_static_files_router(
                path="/static", directories=[PACKAGE_ROOT / "web" / "static"],
                opt={"public": True}, include_in_schema=False,
            ),
        ],
        lifespan=[lifespan],
        # The guard (default deny) as a before-request hook: Litestar's guards copy the
        # route handler on every call.
        before_request=authorize_request,
        dependencies={"kernel": Provide(provide_kernel, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            # Request id + admission control + latency histogram, one pure-ASGI layer.
            front_door(metrics, settings.access_log),
            CookieBackendConfig(
                secret=secret, key="kunde_session", secure=settings.secure_cookies,
                httponly=True, samesite="lax", max_age=8 * 3600, exclude=API_PATHS,
            ).middleware,
            *[m for f in feats for m in f.middleware],
        ],
        csrf_config=CSRFConfig(
            secret=settings.secret_key, cookie_name="kunde_csrf",
            cookie_secure=settings.secure_cookies, cookie_samesite="strict",
            exclude=API_PATHS,
        ),
        template_config=TemplateConfig(directory=PACKAGE_ROOT, engine=JinjaTemplateEngine),
        openapi_config=OpenAPIConfig(
            title="Kunde", version=kunde.__version__,
            description="Connected-customer platform for retailers.",
            path="/schema", render_plugins=[],
        ),
        request_max_body_size=settings.max_body_bytes,
        # A kernel passed in is usable before the lifespan runs (in-process test clients).
        state=State({"features": feats, "settings": settings,
                     **({"kernel": kernel} if kernel else {})}),
        debug=False,
    )
    check_routes_declare_access(app)
    return app


def asgi() -> Litestar:
    """Factory for ASGI servers (``granian --factory kunde.app:asgi``)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
