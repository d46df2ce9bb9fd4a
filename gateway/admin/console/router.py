"""Serves the console's static files at /admin/ui with headers that lock the page down.

The files are read into memory once at import: there are a few dozen kilobytes of them, and a
fixed table of known paths leaves no file-system path for a request to steer. Every response
carries a Content-Security-Policy that allows only the console's own files and its own origin
(no inline script or style, no framing), so markup that slipped into data could not run even
if the page rendered it; the pages render data with textContent only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from gateway.core.errors import NotFoundError

CONSOLE_PATH = "/admin/ui"
STATIC_DIR = Path(__file__).parent / "static"
INDEX = "index.html"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Revalidate every time: an upgraded gateway must never pair new pages with old scripts.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str


def load_assets(root: Path) -> dict[str, Asset]:
    """Every servable file under `root`, by its URL path relative to the console."""
    return {
        path.relative_to(root).as_posix(): Asset(path.read_bytes(), CONTENT_TYPES[path.suffix])
        for path in sorted(root.rglob("*"))
        if path.suffix in CONTENT_TYPES
    }


ASSETS = load_assets(STATIC_DIR)
router = APIRouter(include_in_schema=False)


@router.get(CONSOLE_PATH)
async def console_root() -> RedirectResponse:
    """The page's relative script and style URLs resolve only under the trailing slash."""
    return RedirectResponse(CONSOLE_PATH + "/", status_code=308, headers=SECURITY_HEADERS)


@router.get(CONSOLE_PATH + "/{asset_path:path}")
async def console_asset(asset_path: str) -> Response:
    asset = ASSETS.get(asset_path or INDEX)
    if asset is None:
        raise NotFoundError(f"No console file '{asset_path}'.", "unknown_url")
    return Response(asset.body, media_type=asset.content_type, headers=SECURITY_HEADERS)
