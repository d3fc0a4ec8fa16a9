"""The web console: server-rendered pages under /console, assets served from the package itself."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from adstack.console.pages import (
    account,
    ads,
    ads_new,
    apps,
    audiences,
    auth,
    connectors,
    finance,
    inventory,
    logs,
    notifications,
    overview,
    pipeline,
    reports,
    review,
    team,
)
from adstack.console.web import PREFIX, ConsoleRoute, check_csrf
from adstack.core.errors import NotFound

log = logging.getLogger("adstack.console")

STATIC_DIR = Path(__file__).resolve().parent / "static"
VENDOR_DIR = STATIC_DIR / "vendor" / "node_modules"

# Browser libraries installed from npm by scripts/setup.sh; only these files are served.
VENDOR_FILES = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "chart.umd.js": "chart.js/dist/chart.umd.js",
    "inter-latin-400-normal.woff2": "@fontsource/inter/files/inter-latin-400-normal.woff2",
    "inter-latin-500-normal.woff2": "@fontsource/inter/files/inter-latin-500-normal.woff2",
    "inter-latin-600-normal.woff2": "@fontsource/inter/files/inter-latin-600-normal.woff2",
    # The accessibility checks the browser tests run on every page.
    "axe.min.js": "axe-core/axe.min.js",
}



def missing_vendor_assets() -> list[str]:
    """The browser libraries not installed: without htmx and Chart.js the pages load, but quick edits, charts and
    every form that posts in place silently do nothing."""
    return sorted(name for name, relative in VENDOR_FILES.items() if not (VENDOR_DIR / relative).is_file())


# Every console route checks the CSRF token of state-changing requests before its handler runs.
public_router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, dependencies=[Depends(check_csrf)],
                          include_in_schema=False)
# The creation wizard goes first: its fixed paths (/ads/new) must win over the list's /ads/{level}.
for page_module in (auth, overview, account, ads_new, ads, finance, reports, audiences, apps, connectors, inventory,
                    review, logs, pipeline, notifications, team):
    public_router.include_router(page_module.router)


@public_router.get("/vendor/{name}")
def vendor_asset(name: str) -> Response:
    relative = VENDOR_FILES.get(name)
    path = VENDOR_DIR / relative if relative else None
    if path is None or not path.is_file():
        raise NotFound("asset not found; run scripts/setup.sh to install the console's browser assets")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})


def install(app: FastAPI) -> None:
    def warn_of_missing_assets(app: FastAPI) -> None:
        if missing := missing_vendor_assets():
            log.warning("the console's browser assets are not installed (%s missing under %s): its charts and "
                        "in-place forms will not work; run scripts/setup.sh", ", ".join(missing), VENDOR_DIR)

    app.state.on_startup.append(warn_of_missing_assets)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR / "assets"), name="console-static")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)
