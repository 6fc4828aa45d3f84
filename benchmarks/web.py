"""Web benchmark: a participant's submit and Today page against a bare Flask app, driven by wrk.

Like with like: both apps run under gunicorn with the project's settings (2 threaded workers,
as `make run` starts it) on the same engine (a SQLite file, and PostgreSQL when reachable), and
the bare app builds its engine with the diary's own settings (`diary.database.engine_options`,
and on SQLite `tune_sqlite`: WAL, synchronous=NORMAL, the same busy timeout); each run starts by
reading the settings of a connection on both sides and stops if they differ. The bare app does
the least a diary request must: one INSERT of a similar row (submit), one template of the same
size (Today). Beside them the bare app serves the floor (``web_floor``): a submit's own work
(the phone's cookie, the CSRF token, one read of what the rules need, the diary's rules and its
write statements) with none of the diary's request machinery, on the diary's database; its
forms are the diary's, each sent once and checked afterwards like the diary's. ``floor`` is its
rate against the bare INSERT (how far the work alone is from it), ``diary_vs_floor`` the diary's
against the floor (what the diary's machinery costs).

The load generator is wrk (`wrk_prepared.lua`, the same script for both sides). Every diary
submit is a real accepted entry: participants with Day 1 open are built through the diary's own
functions and each one's form (cookie, CSRF token, idempotency key) is fetched before the clock
starts; no form is sent twice. After each run the database is checked: every accepted submit
stored (lost), none stored twice (duplicated). wrk's own CPU time is measured, so the output says
how busy the client was (near 100% of its threads would mean the client, not the server, set
the pace). Runs of ``--duration`` seconds interleave diary and bare ``--rounds`` times at 1, 10
and 50 clients; the median ratio of rates, and of p99 latencies, is reported:

    RESULT submit-sqlite-c10 ratio=0.32 p99_ratio=2.5 floor=0.39 diary_vs_floor=0.89 lost=0 duplicated=0 ...

    .venv/bin/python benchmarks/web.py [--duration 2] [--rounds 3] [--clients 1 10 50]
                                       [--engines sqlite postgresql]
Goal (issue 32): submit >= 0.5x the bare INSERT at every level with p99 <= 3x; Today >= 0.5x.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
SCRIPT = Path(__file__).resolve().parent / "wrk_prepared.lua"
PG_ADMIN = os.environ.get("DIARY_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

BARE_APP = """
import os
from datetime import datetime, timezone
from flask import Flask, render_template_string, request
from sqlalchemy import create_engine, text
from diary.database import engine_options, tune_sqlite
from web import connection_settings

app = Flask(__name__)
url = os.environ["BARE_DATABASE_URL"]
engine = create_engine(url, **engine_options(url, {}))
if url.startswith("sqlite"):
    tune_sqlite(engine)
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

@app.get("/settings")
def settings():
    with engine.connect() as connection:
        return connection_settings(connection)

import web_floor
web_floor.install(app)  # POST /floor/<assessment>: a submit's work without the diary's machinery
"""

SIDE_EFFECTS = (
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
)


def connection_settings(connection) -> dict:
    """What decides a commit's cost on this connection, and the pool it came from."""
    pool = connection.engine.pool
    settings = {"pool": type(pool).__name__, "pool_size": pool.size() if hasattr(pool, "size") else None}
    if connection.dialect.name == "sqlite":
        # The connection's class says whether its writers take turns at the gate (GatedConnection).
        settings["connection"] = type(connection.connection.dbapi_connection).__name__
        for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout"):
            settings[name] = connection.exec_driver_sql(f"PRAGMA {name}").scalar()
    else:
        for name in ("synchronous_commit", "statement_timeout", "default_transaction_isolation", "fsync"):
            settings[name] = connection.exec_driver_sql(f"SHOW {name}").scalar()
    return settings


def diary_settings(url: str, secret: str) -> dict:
    """The settings of a connection the diary's own engine hands out (as its workers build it)."""
    from diary import create_app
    from diary.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": secret})
    with app.app_context():
        with db.engine.connect() as connection:
            settings = connection_settings(connection)
        db.engine.dispose()
    return settings


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
            app_spec,
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )


def build(url: str, secret: str, count: int, first: int) -> list[tuple[str, int]]:
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
        for n in range(first, first + count):
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


def prepare_submit(base: str, cookie: str, assessment: int) -> tuple[str, dict]:
    """Fetch the participant's Day 1 form; returns the Cookie header and the filled form."""
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
    for term in SIDE_EFFECTS:
        form[f"side_effects.symptoms.{term}"] = "none"
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies), form


def wrk(base: str, lines: list[str], clients: int, duration: int, mode: str, folder: Path) -> dict:
    """One wrk run over the prepared request lines; wrk's figures and its own CPU time."""
    threads = min(clients, 2)
    requests_file = folder / "requests.tsv"
    requests_file.write_text("\n".join(lines) + "\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # The servers are running, not waited for, so the children's usage that grows is wrk's.
    started = time.perf_counter()
    finished = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(clients),
            "-d",
            f"{duration}s",
            "--timeout",
            "30s",
            "-s",
            str(SCRIPT),
            base,
            "--",
            str(requests_file),
            str(threads),
            mode,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 90,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = re.search(r"^WRK (.*)$", finished.stdout, re.M)
    if finished.returncode != 0 or not found:
        raise SystemExit(f"wrk failed: {finished.stdout[-800:]} {finished.stderr[-800:]}")
    figures = {name: int(value) for name, value in (pair.split("=") for pair in found.group(1).split())}
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    figures["rate"] = figures["requests"] / (figures["duration_us"] / 1e6)
    figures["p99"] = figures["p99_us"] / 1000
    figures["p50"] = figures["p50_us"] / 1000
    figures["client_busy"] = cpu / (wall * threads)
    figures["errors"] = figures["client_errors"] + figures["server_errors"] + figures["socket_errors"]
    if figures["client_busy"] > 0.9:
        # The client, not the server, set the pace: the run measures nothing about the app.
        raise SystemExit(f"wrk was busy {figures['client_busy']:.0%} of its threads' time: the client is saturated")
    return figures


def stored_check(url: str, assessments: list[int]) -> tuple[int, int]:
    """How many of ``assessments`` have a stored submission, and how many have more than one."""
    from sqlalchemy import bindparam, create_engine, text

    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT assessment_id, count(*) FROM submission WHERE assessment_id IN :ids GROUP BY assessment_id"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": assessments},
        ).all()
    engine.dispose()
    return len(rows), sum(1 for _, count in rows if count > 1)


def line(method: str, path: str, cookie: str = "", body: str = "") -> str:
    return f"{method}\t{path}\t{cookie}\t{body}"


class Engine:
    """One engine's diary and bare servers, and the participants built for its runs."""

    def __init__(self, engine: str, folder: Path, args):
        self.engine, self.folder, self.args = engine, folder, args
        if engine == "sqlite":
            self.diary_url, self.bare_url = f"sqlite:///{folder}/diary.sqlite", f"sqlite:///{folder}/bare.sqlite"
        else:
            import psycopg

            with psycopg.connect(PG_ADMIN.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
                for name in ("diary_bench_web", "bare_bench_web"):
                    c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                    c.execute(f"CREATE DATABASE {name}")
            base = PG_ADMIN.rsplit("/", 1)[0]
            self.diary_url, self.bare_url = f"{base}/diary_bench_web", f"{base}/bare_bench_web"
        self.secret = "bench-web-secret"
        self.built = 0

    def start(self) -> list[subprocess.Popen]:
        env = {
            **os.environ,
            "DIARY_DATABASE_URL": self.diary_url,
            "DIARY_SECRET_KEY": self.secret,
            "DIARY_INSTANCE_PATH": str(self.folder / "instance"),
            "DIARY_BASE_URL": "http://127.0.0.1",
            "BARE_DATABASE_URL": self.bare_url,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(Path(__file__).resolve().parent)]),
        }
        subprocess.run(
            [str(BIN / "flask"), "--app", "wsgi", "diary", "init"], cwd=ROOT, env=env, check=True, capture_output=True
        )
        from sqlalchemy import create_engine, text

        bare_engine = create_engine(self.bare_url)
        with bare_engine.begin() as connection:
            kind = "INTEGER PRIMARY KEY AUTOINCREMENT" if self.engine == "sqlite" else "SERIAL PRIMARY KEY"
            connection.execute(
                text(f"CREATE TABLE bench_item (id {kind}, assessment_id INTEGER, payload TEXT, created_at TIMESTAMP)")
            )
        bare_engine.dispose()
        (self.folder / "bare_app.py").write_text(BARE_APP)
        diary_port, bare_port = free_port(), free_port()
        self.diary, self.bare = f"http://127.0.0.1:{diary_port}", f"http://127.0.0.1:{bare_port}"
        servers = [
            gunicorn("wsgi:app", diary_port, env, ROOT, self.folder / "diary.log"),
            gunicorn("bare_app:app", bare_port, env, self.folder, self.folder / "bare.log"),
        ]
        wait_up(f"{self.diary}/healthz")
        wait_up(f"{self.bare}/today")
        return servers

    def check_settings(self) -> str:
        """Both sides' connection settings, which must be the same."""
        diary = diary_settings(self.diary_url, self.secret)
        bare = requests.get(f"{self.bare}/settings", timeout=10).json()
        if diary != bare:
            raise SystemExit(f"{self.engine}: the bare app's settings differ from the diary's: {bare} != {diary}")
        return ", ".join(f"{name}={value}" for name, value in sorted(diary.items()))

    def forms(self, count: int) -> list[tuple[int, str, dict]]:
        """``count`` new participants' Day 1 forms: (assessment, cookie header, form)."""
        phones = build(self.diary_url, self.secret, count, self.built)
        self.built += count
        with ThreadPoolExecutor(max_workers=4) as pool:
            prepared = list(pool.map(lambda phone: prepare_submit(self.diary, *phone), phones))
        return [(assessment, cookie, form) for (_, assessment), (cookie, form) in zip(phones, prepared)]

    def submit_run(self, clients: int, pool_size: int, floor: bool = False) -> dict:
        """The diary's submits (or, ``floor``, the same forms' work in the bare app,
        ``web_floor``): each form once; then the database says what was stored."""
        server, path = (self.bare, "/floor") if floor else (self.diary, "/p/entry")
        for _attempt in range(4):
            forms = self.forms(pool_size)
            lines = [line("POST", f"{path}/{a}", cookie, urlencode(form)) for a, cookie, form in forms]
            figures = wrk(server, lines, clients, self.args.duration, "once", self.folder)
            if not figures["exhausted"]:
                break
            pool_size *= 2  # faster than the calibration said: the run is discarded, not counted
        else:
            raise SystemExit("the prepared forms ran out four times")
        stored, duplicated = stored_check(self.diary_url, [a for a, _, _ in forms])
        figures["stored"], figures["duplicated"] = stored, duplicated
        # Accepted (a redirect to the saved page) but not stored; a submit in flight when wrk
        # stopped may be stored with no response counted, never the other way round.
        figures["lost"] = max(0, figures["redirects"] - stored)
        figures["forms"] = forms
        return figures

    def bare_submit_run(self, clients: int, forms: list) -> dict:
        lines = [line("POST", "/submit", "", urlencode({**form, "assessment": a})) for a, _, form in forms]
        return wrk(self.bare, lines, clients, self.args.duration, "cycle", self.folder)


def run_engine(engine: str, args) -> list[str]:
    results = []
    with tempfile.TemporaryDirectory(prefix="diary-web-") as folder:
        bench = Engine(engine, Path(folder), args)
        servers = bench.start()
        try:
            print(f"{engine} settings, same on both sides: {bench.check_settings()}")
            # Calibration (also the servers' warm-up): how many forms a run needs, with room.
            probe = bench.submit_run(10, 400 * args.duration)
            pool_size = int(probe["rate"] * args.duration * 1.6) + 20
            today_cookie = bench.forms(1)[0][1]
            for clients in args.clients:
                submit_pairs, today_pairs, floors = [], [], []
                for _ in range(args.rounds):
                    diary = bench.submit_run(clients, pool_size)
                    bare = bench.bare_submit_run(clients, diary["forms"])
                    submit_pairs.append((diary, bare))
                    floors.append(bench.submit_run(clients, pool_size * 2, floor=True))
                    today = [line("GET", "/p/today", today_cookie)]
                    today_pairs.append(
                        (
                            wrk(bench.diary, today, clients, args.duration, "cycle", bench.folder),
                            wrk(bench.bare, [line("GET", "/today")], clients, args.duration, "cycle", bench.folder),
                        )
                    )
                for name, pairs in (("submit", submit_pairs), ("today", today_pairs)):
                    ratio = statistics.median(d["rate"] / b["rate"] for d, b in pairs)
                    p99_ratio = statistics.median(d["p99"] / b["p99"] for d, b in pairs)
                    busy = max(max(d["client_busy"], b["client_busy"]) for d, b in pairs)
                    errors = sum(d["errors"] + b["errors"] for d, b in pairs)
                    d, b = sorted(pairs, key=lambda pair: pair[0]["rate"] / pair[1]["rate"])[len(pairs) // 2]
                    checked = ""
                    if name == "submit":
                        for side, runs in (("submit", [p[0] for p in pairs]), ("floor", floors)):
                            accepted = sum(run["redirects"] for run in runs)
                            stored = sum(run["stored"] for run in runs)
                            tally = (
                                f"lost={sum(r['lost'] for r in runs)} duplicated={sum(r['duplicated'] for r in runs)}"
                            )
                            print(f"{engine} {side} c={clients}: {accepted} accepted, {stored} stored, {tally}")
                        lost = sum(run["lost"] for run in [*floors, *(p[0] for p in pairs)])
                        duplicated = sum(run["duplicated"] for run in [*floors, *(p[0] for p in pairs)])
                        busy = max(busy, *(run["client_busy"] for run in floors))
                        errors += sum(run["errors"] for run in floors)
                        # The floor against the same round's bare INSERT, and the diary against the floor.
                        floor_ratio = statistics.median(f["rate"] / b["rate"] for f, (_, b) in zip(floors, pairs))
                        to_floor = statistics.median(d["rate"] / f["rate"] for f, (d, _) in zip(floors, pairs))
                        checked = f" floor={floor_ratio:.2f} diary_vs_floor={to_floor:.2f} lost={lost} duplicated={duplicated}"
                        f = sorted(floors, key=lambda run: run["rate"])[len(floors) // 2]
                        print(
                            f"{engine} floor c={clients}: {f['rate']:.0f} req/s p50 {f['p50']:.1f} ms p99 {f['p99']:.1f} ms"
                        )
                    print(
                        f"{engine} {name} c={clients}: diary {d['rate']:.0f} req/s p50 {d['p50']:.1f} ms "
                        f"p99 {d['p99']:.1f} ms | bare {b['rate']:.0f} req/s p50 {b['p50']:.1f} ms "
                        f"p99 {b['p99']:.1f} ms | errors {errors} | wrk busy at most {busy:.0%} of its threads"
                    )
                    results.append(
                        f"RESULT {name}-{engine}-c{clients} ratio={ratio:.2f} p99_ratio={p99_ratio:.1f}"
                        f"{checked} errors={errors} client_busy={busy:.2f}"
                    )
        finally:
            for server in servers:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=15)
            for name in ("diary.log", "bare.log"):
                errors = [
                    text
                    for text in (Path(folder) / name).read_text(errors="replace").splitlines()
                    if "Error" in text or "Traceback" in text or "WORKER TIMEOUT" in text
                ]
                if errors:
                    print(f"{engine} {name}: " + " | ".join(errors[-5:]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=2, help="seconds a wrk run lasts")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved diary/bare pairs per level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
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
