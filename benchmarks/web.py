"""Web benchmark: a participant's submit and Today page, against a bare Flask app, same settings.

Both run under gunicorn with the project's settings (2 threaded workers) on the same engine
(a SQLite file, and PostgreSQL when reachable). The bare app's endpoints do the least a diary
request must: one INSERT of a similar row (submit), one template of the same size (Today).
Participants with Day 1 open are built through the diary's own functions; each submit is a
real form (CSRF token, idempotency key) fetched before the clock starts. A bounded load
generator drives 1, 10 and 50 clients, interleaving diary and bare runs three times; the
median ratio is reported. Ends with lines such as

    RESULT submit-sqlite-c10 ratio=0.42 p99_ratio=3.1

    .venv/bin/python benchmarks/web.py [--requests 150] [--clients 1 10 50] [--engines sqlite postgresql]
Goal: submit >= 0.4x the bare rate at every level with p99 <= 4x; Today >= 0.3x.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
PG_ADMIN = os.environ.get("DIARY_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

BARE_APP = """
import os
from datetime import datetime, timezone
from flask import Flask, render_template_string, request
from sqlalchemy import create_engine, text
app = Flask(__name__)
engine = create_engine(os.environ["BARE_DATABASE_URL"], pool_pre_ping=True)
PAGE = "<!doctype html><html><body>{% for n in range(size) %}<p>entry {{ n }} open until {{ now }}</p>{% endfor %}</body></html>"

@app.post("/submit")
def submit():
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO bench_item (assessment_id, payload, created_at) VALUES (:a, :p, :t)"),
                           {"a": int(request.form["assessment"]), "p": "&".join(f"{k}={v}" for k, v in request.form.items()),
                            "t": datetime.now(timezone.utc)})
    return "", 302, {"Location": "/done"}

@app.get("/today")
def today():
    return render_template_string(PAGE, size=int(os.environ.get("BARE_PAGE_SIZE", "40")), now=datetime.now(timezone.utc))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not start")


def gunicorn(app_spec: str, port: int, env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    """A server with the project's settings; its log (tracebacks of any 5xx) goes to ``log``."""
    # Idle connections are kept 75 s (as a proxy in front of the app keeps a phone's): each
    # submit's connection is opened when its form is fetched, before the clock starts, and with
    # gunicorn's 2 s default a few were closed just as their POST went out (a client-side race
    # both sides would meet, reported as errors).
    return subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--worker-class",
            "gthread",
            "--threads",
            "4",
            "--keep-alive",
            "75",
            app_spec,
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )


def build(url: str, secret: str, count: int) -> list[tuple[str, int]]:
    """``count`` participants with Day 1 open; returns (phone cookie, Day 1 assessment id) each."""
    from itsdangerous import URLSafeTimedSerializer

    from diary import create_app
    from diary.dosing.infusions import record_dose
    from diary.extensions import db
    from diary.models import now_utc
    from diary.participants.enrolment import enroll
    from diary.study.trial import require_study

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": secret})
    phones = []
    with app.app_context():
        study, now = require_study(), now_utc()
        serializer = URLSafeTimedSerializer(secret, salt="diary-participant-phone")
        for n in range(count):
            participant, _ = enroll(
                study,
                site="NIH-CC",
                timezone="UTC",
                sequence="AB",
                actor="bench",
                now=now - timedelta(days=2),
                code=f"P-W{n:05d}",
            )
            record_dose(participant, 1, now - timedelta(hours=21), actor="bench", now=now)
            participant.pin_hash = "set-for-the-benchmark"  # the cookie below stands for a PIN typed once
            db.session.flush()
            cookie = serializer.dumps(
                {"p": participant.id, "g": participant.pin_generation, "s": 0, "l": participant.link_token_hash[:16]}
            )
            day1 = next(a.id for a in participant.periods[0].assessments if a.timepoint == "D1")
            phones.append((cookie, day1))
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            # Planner statistics, as autovacuum keeps them on a trial's database.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql("ANALYZE")
        db.engine.dispose()
    return phones


def prepare_submit(base: str, cookie: str, assessment: int) -> tuple[requests.Session, dict]:
    session = requests.Session()
    session.cookies.set("diary_phone", cookie, path="/p")
    page = session.get(f"{base}/p/entry/{assessment}", timeout=30).text
    form = {
        "csrf_token": re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1),
        "idempotency_key": re.search(r'name="idempotency_key" value="([^"]+)"', page).group(1),
        "step": "submit",
        "fatigue_vas.fatigue": "55",
        "fatigue_vas.fatigue.touched": "1",
        "energy_nrs.energy": "5",
        "blinding_guess.guess": "dont_know",
        "side_effects.other": "",
    }
    for term in (
        "headache",
        "dizziness",
        "nausea",
        "vomiting",
        "drowsiness",
        "restlessness",
        "vivid_dreams",
        "visual_changes",
        "time_distortion",
        "detachment",
    ):
        form[f"side_effects.symptoms.{term}"] = "none"
    return session, form


def drive(jobs: list, clients: int) -> dict:
    """Run the prepared jobs (callables returning a status) on ``clients`` threads; time them."""
    latencies, errors, lock = [], [0], threading.Lock()
    queue = list(jobs)

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                job = queue.pop()
            started = time.perf_counter()
            status = job()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if status >= 500 or status == 0:
                    errors[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "rate": len(latencies) / wall,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "errors": errors[0],
    }


def call(session, method, url, data=None):
    def job():
        try:
            return session.request(method, url, data=data, allow_redirects=False, timeout=60).status_code
        except requests.RequestException as error:
            print(f"  {method} {url}: {type(error).__name__}: {error}"[:300], file=sys.stderr)
            return 0

    return job


def run_engine(engine: str, args) -> list[str]:
    results = []
    with tempfile.TemporaryDirectory(prefix="diary-web-") as folder:
        folder = Path(folder)
        if engine == "sqlite":
            diary_url, bare_url = f"sqlite:///{folder}/diary.sqlite", f"sqlite:///{folder}/bare.sqlite"
        else:
            import psycopg

            with psycopg.connect(PG_ADMIN.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
                for name in ("diary_bench_web", "bare_bench_web"):
                    c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                    c.execute(f"CREATE DATABASE {name}")
            base = PG_ADMIN.rsplit("/", 1)[0]
            diary_url, bare_url = f"{base}/diary_bench_web", f"{base}/bare_bench_web"
        secret = "bench-web-secret"
        env = {
            **os.environ,
            "DIARY_DATABASE_URL": diary_url,
            "DIARY_SECRET_KEY": secret,
            "DIARY_INSTANCE_PATH": str(folder / "instance"),
            "DIARY_BASE_URL": "http://127.0.0.1",
            "BARE_DATABASE_URL": bare_url,
        }
        subprocess.run(
            [str(BIN / "flask"), "--app", "wsgi", "diary", "init"], cwd=ROOT, env=env, check=True, capture_output=True
        )
        from sqlalchemy import create_engine, text

        bare_engine = create_engine(bare_url)
        with bare_engine.begin() as connection:
            kind = "INTEGER PRIMARY KEY AUTOINCREMENT" if engine == "sqlite" else "SERIAL PRIMARY KEY"
            connection.execute(
                text(f"CREATE TABLE bench_item (id {kind}, assessment_id INTEGER, payload TEXT, created_at TIMESTAMP)")
            )
            if engine == "sqlite":
                connection.execute(text("PRAGMA journal_mode=WAL"))
        bare_engine.dispose()
        (folder / "bare_app.py").write_text(BARE_APP)
        rounds = 3
        phones = build(diary_url, secret, args.requests * len(args.clients) * rounds + args.requests)
        diary_port, bare_port = free_port(), free_port()
        servers = [
            gunicorn("wsgi:app", diary_port, env, ROOT, folder / "diary.log"),
            gunicorn("bare_app:app", bare_port, env, folder, folder / "bare.log"),
        ]
        diary, bare = f"http://127.0.0.1:{diary_port}", f"http://127.0.0.1:{bare_port}"
        try:
            wait_up(f"{diary}/healthz")
            wait_up(f"{bare}/today")
            today_cookie = phones.pop()[0]
            for clients in args.clients:
                submit_pairs, today_pairs = [], []
                for _ in range(rounds):
                    batch, phones = phones[: args.requests], phones[args.requests :]
                    prepared = [prepare_submit(diary, cookie, assessment) for cookie, assessment in batch]
                    diary_jobs = [call(s, "POST", f"{diary}/p/entry/{a}", f) for (s, f), (_, a) in zip(prepared, batch)]
                    bare_session = requests.Session()
                    bare_jobs = [
                        call(bare_session, "POST", f"{bare}/submit", {**f, "assessment": a})
                        for (_, f), (_, a) in zip(prepared, batch)
                    ]
                    submit_pairs.append((drive(diary_jobs, clients), drive(bare_jobs, clients)))
                    today_session = requests.Session()
                    today_session.cookies.set("diary_phone", today_cookie, path="/p")
                    diary_today = [call(today_session, "GET", f"{diary}/p/today") for _ in range(args.requests)]
                    bare_today = [call(requests.Session(), "GET", f"{bare}/today") for _ in range(args.requests)]
                    today_pairs.append((drive(diary_today, clients), drive(bare_today, clients)))
                for name, pairs in (("submit", submit_pairs), ("today", today_pairs)):
                    ratio = statistics.median(d["rate"] / b["rate"] for d, b in pairs)
                    p99_ratio = statistics.median(d["p99"] / b["p99"] for d, b in pairs)
                    d, b = pairs[len(pairs) // 2]
                    print(
                        f"{engine} {name} c={clients}: diary {d['rate']:.0f} req/s p50 {d['p50']:.1f} ms "
                        f"p99 {d['p99']:.1f} ms errors {sum(p[0]['errors'] for p in pairs)} | bare "
                        f"{b['rate']:.0f} req/s p50 {b['p50']:.1f} ms p99 {b['p99']:.1f} ms"
                    )
                    results.append(f"RESULT {name}-{engine}-c{clients} ratio={ratio:.2f} p99_ratio={p99_ratio:.1f}")
        finally:
            for server in servers:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=15)
            for name in ("diary.log", "bare.log"):
                errors = [
                    line
                    for line in (folder / name).read_text(errors="replace").splitlines()
                    if "Error" in line or "Traceback" in line or "WORKER TIMEOUT" in line
                ]
                if errors:
                    print(f"{engine} {name}: " + " | ".join(errors[-5:]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=150, help="requests per run and side")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    lines = []
    for engine in args.engines:
        if engine == "postgresql":
            try:
                import psycopg

                psycopg.connect(PG_ADMIN.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=2).close()
            except Exception as error:  # noqa: BLE001  no server: say so and go on
                print(f"PostgreSQL not reachable ({error}); skipped")
                continue
        lines += run_engine(engine, args)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
