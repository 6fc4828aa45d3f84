"""The production front: Caddy (Debian's package, as deploy/Caddyfile sets it up) in front of
gunicorn as `make run` serves the app. Fifty stalled clients (half a request head each) hold
gunicorn's threads when they reach it directly, and delay nothing behind Caddy: /healthz and a
participant's submit still answer."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from diary.extensions import db
from diary.study.trial import ensure_study

from .conftest import answers_for, make_app
from .participant_helpers import csrf_from, key_from, participant_with_day1_open
from .test_reminders import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("caddy") is None, reason="needs Debian's caddy (.ci/run installs it)")


def _wait_for(port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def served(tmp_path):
    """gunicorn (2 threaded workers of 4 threads, as `make run`) and Caddy in front of it."""
    database = tmp_path / "diary.sqlite"
    app = make_app(f"sqlite:///{database}")
    with app.app_context():
        db.create_all()
        study, _ = ensure_study()
        db.session.commit()
        participant, token = participant_with_day1_open(study, code="P-FRONT1")
        entry = participant.periods[0].assessments
        day1 = next(a.id for a in entry if a.timepoint == "D1")
        from diary.study.trial import protocol_of

        form = answers_for(protocol_of(study.current_protocol_version), "D1")
        db.session.remove()
        db.engine.dispose()
    app_port, front_port = free_port(), free_port()
    env = {
        **os.environ,
        "DIARY_DATABASE_URL": f"sqlite:///{database}",
        "DIARY_SECRET_KEY": "test-secret",
        "DIARY_BASE_URL": f"http://127.0.0.1:{front_port}",
        "DIARY_INSTANCE_PATH": str(tmp_path),
    }
    gunicorn = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--bind",
            f"127.0.0.1:{app_port}",
            "--workers",
            "2",
            "--worker-class",
            "gthread",
            "--threads",
            "4",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(
        "{\n\tauto_https off\n\tadmin off\n\tservers {\n\t\ttimeouts {\n\t\t\tread_header 10s\n"
        "\t\t}\n\t}\n}\n"
        f"http://127.0.0.1:{front_port} {{\n\treverse_proxy 127.0.0.1:{app_port} {{\n"
        "\t\tbuffer_requests\n\t}\n}\n"
    )
    caddy = subprocess.Popen(
        ["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(app_port)
        _wait_for(front_port)
        yield {"app": app_port, "front": front_port, "token": token, "day1": day1, "form": form}
    finally:
        for process in (caddy, gunicorn):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _stall(port: int, count: int) -> list[socket.socket]:
    """``count`` clients that send half a request head and then nothing."""
    stalled = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        stalled.append(client)
    return stalled


def _submit(base: str, served: dict) -> int:
    """A participant's whole visit: link, PIN, the Day 1 form, saved."""
    phone = requests.Session()
    page = phone.get(f"{base}/p/{served['token']}", timeout=10).text
    phone.post(
        f"{base}/p/{served['token']}",
        data={"pin": "4821", "confirm": "4821", "csrf_token": csrf_from(page)},
        timeout=10,
    )
    page = phone.get(f"{base}/p/entry/{served['day1']}", timeout=10).text
    saved = phone.post(
        f"{base}/p/entry/{served['day1']}",
        data={**served["form"], "csrf_token": csrf_from(page), "idempotency_key": key_from(page), "step": "submit"},
        timeout=10,
        allow_redirects=False,
    )
    return saved.status_code


def test_fifty_stalled_clients_delay_nothing_behind_caddy(served):
    front = f"http://127.0.0.1:{served['front']}"
    stalled = _stall(served["front"], 50)
    try:
        assert requests.get(f"{front}/healthz", timeout=5).status_code == 200
        assert _submit(front, served) == 302
    finally:
        for client in stalled:
            client.close()


def test_fifty_stalled_clients_reaching_gunicorn_directly_do_hold_it(served):
    """The control: the same clients straight at gunicorn take its eight threads, so /healthz waits
    (why every real deployment puts the front in between)."""
    stalled = _stall(served["app"], 50)
    try:
        with pytest.raises(requests.exceptions.Timeout):
            requests.get(f"http://127.0.0.1:{served['app']}/healthz", timeout=3)
    finally:
        for client in stalled:
            client.close()


def test_participants_submit_through_a_login_flood(served):
    """Sixteen clients send wrong passwords as fast as they can, straight at gunicorn on SQLite,
    while ten health checks and then a participant's whole visit (link, PIN, form, save) go
    through: all succeed, none waits two seconds (the tarpit sleeps after its commit and refuses
    at once when its slot is busy; password checks have their own cap)."""
    import threading

    base = f"http://127.0.0.1:{served['app']}"
    stop = threading.Event()
    statuses: list[int] = []

    def flood():
        session = requests.Session()
        page = session.get(f"{base}/staff/login", timeout=10).text
        token = csrf_from(page)
        while not stop.is_set():
            try:
                statuses.append(
                    session.post(
                        f"{base}/staff/login",
                        data={"email": "nobody@site.test", "password": "not the password", "csrf_token": token},
                        timeout=30,
                    ).status_code
                )
            except requests.RequestException:
                statuses.append(0)

    flooders = [threading.Thread(target=flood, daemon=True) for _ in range(16)]
    for thread in flooders:
        thread.start()
    time.sleep(2)  # the flood is under way before the first participant arrives
    took, results = [], []
    try:
        for _number in range(10):
            started = time.monotonic()
            results.append(requests.get(f"{base}/healthz", timeout=10).status_code)
            took.append(time.monotonic() - started)
        started = time.monotonic()
        results.append(_submit(base, served))
        took.append(time.monotonic() - started)
    finally:
        stop.set()
        for thread in flooders:
            thread.join(timeout=40)
    print(
        f"login flood: {len(statuses)} refused sign-ins ({statuses.count(429)} at once with 429), "
        f"participant requests slowest {max(took):.2f} s"
    )
    assert results[:10] == [200] * 10 and results[10] == 302
    assert max(took) < 2 and 0 not in statuses and len(statuses) > 50
