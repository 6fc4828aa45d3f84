"""Static assets with their content in their names, so browsers keep them a year.

``asset("diary.css")`` in a template gives ``/assets/diary.<hash>.css``; a changed file gets a
new name, so a page never meets a stale copy, and an unchanged one is never fetched again.
Read once per process and served from memory (small files); Flask-Compress compresses them.
"""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path

from flask import Blueprint, Flask, Response, abort, current_app, url_for

bp = Blueprint("assets", __name__)
YEAR = 365 * 24 * 3600
FINGERPRINTED = (".css", ".js", ".png", ".ico", ".svg", ".webmanifest", ".json")


def _fingerprint(path: Path) -> tuple[str, bytes]:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:12]
    return f"{path.stem}.{digest}{path.suffix}", data


def init_app(app: Flask) -> None:
    names, files = {}, {}
    for path in sorted(Path(app.static_folder).iterdir()):
        if path.is_file() and path.suffix in FINGERPRINTED:
            fingerprinted, data = _fingerprint(path)
            names[path.name] = fingerprinted
            files[fingerprinted] = (data, mimetypes.guess_type(path.name)[0] or "application/octet-stream")
    app.extensions["diary_assets"] = (names, files)
    app.jinja_env.globals["asset"] = asset
    app.register_blueprint(bp)


def asset(filename: str) -> str:
    names, _ = current_app.extensions["diary_assets"]
    return url_for("assets.file", name=names[filename])


@bp.get("/assets/<name>")
def file(name):
    _, files = current_app.extensions["diary_assets"]
    if name not in files:
        abort(404)
    data, mimetype = files[name]
    response = Response(data, mimetype=mimetype)
    response.headers["Cache-Control"] = f"public, max-age={YEAR}, immutable"
    return response


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for it at this fixed address; it changes rarely, so a day's cache."""
    _, files = current_app.extensions["diary_assets"]
    names, _ = current_app.extensions["diary_assets"]
    data, _ = files[names["favicon.ico"]]
    response = Response(data, mimetype="image/vnd.microsoft.icon")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
