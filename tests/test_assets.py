"""Assets: content-hashed names cached for a year, compression on the wire, a favicon."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "static"


def test_pages_link_fingerprinted_assets_cached_for_a_year(client, study):
    """The stylesheet's name carries its content hash; it is served immutable for a year."""
    html = client.get("/staff/login").get_data(as_text=True)
    href = re.search(r'href="(/assets/diary\.([0-9a-f]{12})\.css)"', html)
    assert href, html[:500]
    assert href.group(2) == hashlib.sha256((STATIC / "diary.css").read_bytes()).hexdigest()[:12]
    response = client.get(href.group(1))
    assert response.status_code == 200 and response.data == (STATIC / "diary.css").read_bytes()
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert client.get("/assets/diary.000000000000.css").status_code == 404  # an old name is gone


def test_html_css_and_js_are_compressed_above_a_kilobyte(client, study):
    """With Accept-Encoding: gzip, pages and assets over 1 KB come compressed, and decompress intact."""
    html = client.get("/staff/login").get_data(as_text=True)
    css_url = re.search(r'href="(/assets/diary\.[0-9a-f]{12}\.css)"', html).group(1)
    page = client.get("/staff/login", headers={"Accept-Encoding": "gzip"})
    assert page.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(page.data).startswith(b"<!doctype html>")  # (its CSRF token differs per request)
    plain = client.get(css_url).data
    packed = client.get(css_url, headers={"Accept-Encoding": "gzip"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.data) == plain and len(packed.data) < len(plain) / 2
    tiny = client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in tiny.headers  # under 1 KB: not worth it


def test_the_favicon_and_app_icons_exist(client):
    """/favicon.ico is no longer a 404, and the app icons are PNGs of their stated sizes."""
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.data[:4] == b"\x00\x00\x01\x00"
    for size in (192, 512):
        data = (STATIC / f"icon-{size}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(data[16:20], "big") == size and int.from_bytes(data[20:24], "big") == size
