"""The web console under ``/console``: server-rendered page shells and a small vanilla-JS front end.

The pages hold no tenant data. The browser keeps the bearer token in ``sessionStorage`` and calls
the ``/v1`` JSON API with it, so the API's own checks (the token's tenant first) are the only
access control there is, and the console cannot show what the token could not read anyway. The
token never travels in a URL (so no access log can record it). Data is rendered with
``textContent`` (never ``innerHTML``), and every page is served with a Content-Security-Policy
that allows no inline script, so even an injected tag could not run one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader

from smtp_discovery.admin.errors import ApiError
from smtp_discovery.schemas.tenant import DiscoverySettings

HERE = Path(__file__).parent
TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)

PAGES = {
    "login": "Sign in",
    "overview": "Overview",
    "discovered": "Discovered",
    "invalid": "Marked Invalid",
    "users": "Users",
    "settings": "Settings",
    "reports": "Reports",
}
"""Page name (template, script and path) -> its title. Nothing else is served as a page."""

STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "actions.js": "text/javascript; charset=utf-8",
    "chart.js": "text/javascript; charset=utf-8",
    **{f"{page}.js": "text/javascript; charset=utf-8" for page in PAGES},
}
"""The only files served from ``static/``: a fixed list, so no path can reach anything else."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

router = APIRouter(prefix="/console", include_in_schema=False)


def _prefix(request: Request) -> str:
    """The app's mount point, so the console works behind a proxy that serves it under a path."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _page(request: Request, page: str) -> HTMLResponse:
    root = _prefix(request)
    html = TEMPLATES.get_template(f"{page}.html").render(
        page=page, title=PAGES[page], pages=PAGES, base=f"{root}/console", api=f"{root}/v1"
    )
    return HTMLResponse(html, headers=SECURITY_HEADERS)


@router.get("")
async def console_root(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{_prefix(request)}/console/", status_code=308)


@router.get("/")
async def login(request: Request) -> HTMLResponse:
    return _page(request, "login")


@router.get("/static/{name}")
async def static(name: str) -> Response:
    media_type = STATIC.get(name)
    if media_type is None:
        raise ApiError(404, "not_found", f"no console file {name!r}")
    content = (HERE / "static" / name).read_bytes()
    return Response(content, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/schema/settings")
async def settings_schema() -> dict[str, Any]:
    """Types, bounds and choices of every setting, so the form offers only valid input.

    The contract's JSON Schema, which is public: it holds the code defaults, never a tenant's.
    """
    return DiscoverySettings.model_json_schema()


@router.get("/{page}")
async def page(request: Request, page: str) -> HTMLResponse:
    if page not in PAGES or page == "login":
        raise ApiError(404, "not_found", f"no console page {page!r}")
    return _page(request, page)
