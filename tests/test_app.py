"""The application: configuration layers, the secret key, and error pages people understand."""

import os

from diary import create_app


def test_secret_key_generated_into_instance_config(tmp_path, monkeypatch):
    """On first run a random key is written to instance/config.py and reused afterwards."""
    monkeypatch.setenv("DIARY_INSTANCE_PATH", str(tmp_path))
    monkeypatch.delenv("DIARY_SECRET_KEY", raising=False)
    first = create_app()
    config_file = tmp_path / "config.py"
    assert "SECRET_KEY = " in config_file.read_text()
    assert len(first.config["SECRET_KEY"]) == 64
    assert oct(os.stat(config_file).st_mode)[-3:] == "600"
    assert create_app().config["SECRET_KEY"] == first.config["SECRET_KEY"]


def test_config_layers(tmp_path, monkeypatch):
    """instance/config.py overrides defaults, and DIARY_* variables override both."""
    monkeypatch.setenv("DIARY_INSTANCE_PATH", str(tmp_path))
    (tmp_path / "config.py").write_text("SECRET_KEY = 'k'\nBASE_URL = 'https://from-file'\nPIN_MAX_ATTEMPTS = 7\n")
    monkeypatch.setenv("DIARY_BASE_URL", "https://from-env")
    monkeypatch.setenv("DIARY_DATABASE_URL", "postgresql://postgres@127.0.0.1/test")
    app = create_app()
    assert app.config["BASE_URL"] == "https://from-env"
    assert app.config["PIN_MAX_ATTEMPTS"] == 7
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")


def test_default_database_is_sqlite_in_the_instance_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DIARY_INSTANCE_PATH", str(tmp_path))
    monkeypatch.delenv("DIARY_DATABASE_URL", raising=False)
    (tmp_path / "config.py").write_text("SECRET_KEY = 'k'\n")
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'diary.sqlite'}"


def test_404_page_is_plain_language(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert b"Page not found" in response.data and b"Traceback" not in response.data


def test_500_page_hides_the_trace(app):
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert b"something went wrong on our side" in response.data
    assert b"secret internals" not in response.data


def test_health_check_reaches_the_database(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_pages_load_no_external_resources(client):
    """No CDN: every stylesheet and script comes from this server."""
    html = client.get("/").get_data(as_text=True)
    assert "http://" not in html.replace("http://diary.test", "") and "https://" not in html
