"""diary: a self-hosted symptom diary (ePRO) for clinical trials with dosing periods."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask

__version__ = "0.1.0"

ROOT = Path(__file__).resolve().parent.parent
# In the instance folder: the base URL the last ``make run`` served at.
SERVED_URL_FILE = "served_url.txt"


def create_app(test_config: dict | None = None) -> Flask:
    # DIARY_INSTANCE_PATH moves the instance folder (config.py, the SQLite file) elsewhere.
    instance_path = os.environ.get("DIARY_INSTANCE_PATH") or str(ROOT / "instance")
    app = Flask(
        __name__,
        instance_path=instance_path,
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    configure(app, test_config)
    register_extensions(app)
    register_web(app)
    register_commands(app)
    return app


def configure(app: Flask, test_config: dict | None) -> None:
    """Defaults, then instance/config.py (and the address ``make run`` serves at), then DIARY_*
    variables, then the test's mapping."""
    app.config.from_object("diary.config")
    if test_config is None:
        os.makedirs(app.instance_path, exist_ok=True)
        app.config.from_pyfile("config.py", silent=True)
        served = Path(app.instance_path) / SERVED_URL_FILE
        if served.is_file():
            # ``make run`` writes the address it serves, so a command run from another shell
            # prints links to that server (DIARY_BASE_URL still wins).
            app.config["BASE_URL"] = served.read_text(encoding="utf-8").strip() or app.config["BASE_URL"]
        app.config.from_prefixed_env(prefix="DIARY")
        if not app.config.get("SECRET_KEY"):
            app.config["SECRET_KEY"] = _generate_secret_key(Path(app.instance_path) / "config.py")
    else:
        app.config.from_mapping(test_config)
    url = app.config.get("SQLALCHEMY_DATABASE_URI") or app.config.get("DATABASE_URL")
    if not url:
        url = "sqlite:///" + os.path.join(app.instance_path, "diary.sqlite")
    # Plain postgresql:// URLs would pick psycopg2; the project ships psycopg 3.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    # Session cookies are Secure whenever the diary is served over HTTPS.
    if app.config["BASE_URL"].startswith("https://"):
        app.config["SESSION_COOKIE_SECURE"] = True
    app.config["DIARY_VERSION"] = __version__
    from .governance.passwords import set_hashing_concurrency

    set_hashing_concurrency(app.config["HASHING_CONCURRENCY"])


def _generate_secret_key(config_path: Path) -> str:
    """Write a random SECRET_KEY into instance/config.py on first run: never a hard-coded key."""
    key = secrets.token_hex(32)
    with open(config_path, "a", encoding="utf-8") as handle:
        handle.write(
            f"\n# Generated on first run. Keep it secret; changing it logs everyone out.\nSECRET_KEY = {key!r}\n"
        )
    os.chmod(config_path, 0o600)
    return key


def register_extensions(app: Flask) -> None:
    from .database import init_app as init_database
    from .extensions import csrf

    init_database(app)
    csrf.init_app(app)
    # The reminders listen to what the rules announce (diary/events.py): connected before any
    # request or command runs.
    from . import reminders  # noqa: F401


def register_web(app: Flask) -> None:
    """Blueprints, error pages and template globals: everything in ``diary.web``."""
    from . import web

    web.init_app(app)


def register_commands(app: Flask) -> None:
    from . import cli

    cli.init_app(app)
