"""Deployment benchmark: two gunicorn servers on one PostgreSQL database, and two schedulers.

N participants, each with Day 1 open, sign in and submit at the same time through both servers
(every submit is also sent a second time to the other server, as a double tap on a flaky
connection would), while M participants who do not submit are owed one reminder each and two
scheduler processes dispatch them to a local SMTP server. A third of the way through, one app
server and one scheduler are killed (SIGKILL): requests that meet the dead server go to the
live one, and the live scheduler takes over the dead one's claims when their lease ends. Prints submissions stored,
duplicates, losses, 5xx responses and reminders sent per reminder owed. Goal: 0 duplicates,
0 losses, 0 5xx, exactly 1.0 reminder per reminder owed.

    .venv/bin/python benchmarks/deployment.py [--participants 100] [--silent 100]
        [--database postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from web import SIDE_EFFECTS  # noqa: E402  (the shipped protocol's checklist, one list for both)

BIN = Path(sys.executable).parent
# Its own database per run (the process id keeps two runs from dropping each other's).
DATABASE = f"diary_bench_deployment_{os.getpid()}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox:
    def __init__(self):
        self.recipients = Counter()

    async def handle_DATA(self, server, session, envelope):
        self.recipients.update(envelope.rcpt_tos)
        return "250 OK"


def fresh_database(admin_url: str) -> str:
    """A database of its own, made anew for this run; returns its URL."""
    import psycopg

    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {DATABASE}")
    parts = urllib.parse.urlsplit(admin_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{DATABASE}"))


def daytime_zone(now: datetime) -> str:
    """A zone where it is early afternoon now, so quiet hours hold no reminder back."""
    offset = (13 - now.hour + 12) % 24 - 12
    return "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def build_study(env: dict, participants: int, silent: int) -> list[str]:
    """Through the diary's own functions: participants with Day 1 open. Returns submitters' tokens."""
    subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "diary", "init"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    from diary import create_app
    from diary.dosing.infusions import record_dose
    from diary.extensions import db
    from diary.participants.enrolment import enroll
    from diary.study.trial import require_study

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": env["DIARY_DATABASE_URL"],
            "SECRET_KEY": env["DIARY_SECRET_KEY"],
            "BASE_URL": env["DIARY_BASE_URL"],
        }
    )
    now = datetime.now(UTC)
    zone = daytime_zone(now)
    tokens = []
    with app.app_context():
        study = require_study()
        for n in range(participants + silent):
            participant, token = enroll(
                study,
                site="NIH-CC",
                timezone=zone,
                sequence="AB",
                actor="bench",
                now=now - timedelta(days=2),
                code=f"P-B{n:05d}",
                email=f"p{n}@example.org",
            )
            record_dose(participant, 1, now - timedelta(hours=21), actor="bench", now=now)
            if n < participants:
                tokens.append(token)
        db.session.commit()
        db.engine.dispose()
    return tokens


# Requests that met a dead server (connection refused or cut) and were sent again to the other,
# as a phone retries after a failed connection.
RETRIED = Counter()
DONE = Counter()


def _request(session, servers: list[str], preferred: str, method: str, path: str, **kwargs):
    for server in [preferred] + [s for s in servers if s != preferred]:
        try:
            return session.request(method, f"{server}{path}", timeout=60, **kwargs)
        except requests.ConnectionError:
            RETRIED["connection"] += 1
    raise SystemExit(f"no server answered {method} {path}")


def submit_through(servers: list[str], index: int, token: str) -> list[int]:
    """Sign in on one server, submit Day 1, then send the same submit to the other server; a
    request that meets a dead server is sent to the live one."""
    first, other = servers[index % 2], servers[(index + 1) % 2]
    session = requests.Session()
    statuses = []
    page = _request(session, servers, first, "GET", f"/p/{token}")
    statuses.append(page.status_code)
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    today = _request(
        session, servers, first, "POST", f"/p/{token}", data={"pin": "4821", "confirm": "4821", "csrf_token": csrf}
    )
    statuses.append(today.status_code)
    entry = re.search(r"/p/entry/(\d+)", today.text).group(1)
    form_page = _request(session, servers, first, "GET", f"/p/entry/{entry}")
    statuses.append(form_page.status_code)
    form = {
        "csrf_token": re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form_page.text).group(1),
        "idempotency_key": re.search(r'name="idempotency_key" value="([^"]+)"', form_page.text).group(1),
        "step": "submit",
        "fatigue_vas.fatigue": "55",
        "fatigue_vas.fatigue.touched": "1",
        "energy_nrs.energy": "5",
        "blinding_guess.guess": "dont_know",
    }
    for term in SIDE_EFFECTS:
        form[f"side_effects.symptoms.{term}"] = "none"
    for server in (first, other):
        response = _request(session, servers, server, "POST", f"/p/entry/{entry}", data=form, allow_redirects=False)
        statuses.append(response.status_code)
    DONE["participants"] += 1
    return statuses


def main() -> None:
    from aiosmtpd.controller import Controller

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=100)
    parser.add_argument("--silent", type=int, default=100, help="participants who do not submit (owed a reminder)")
    parser.add_argument(
        "--database",
        default=os.environ.get("DIARY_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args()

    inbox, smtp_port = Inbox(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    url = fresh_database(args.database)
    ports = [free_port(), free_port()]
    env = {
        **os.environ,
        "DIARY_DATABASE_URL": url,
        "DIARY_SECRET_KEY": "bench-shared-secret",
        "DIARY_BASE_URL": f"http://127.0.0.1:{ports[0]}",
        "DIARY_SMTP_HOST": "127.0.0.1",
        "DIARY_SMTP_PORT": str(smtp_port),
        "DIARY_INSTANCE_PATH": f"/tmp/{DATABASE}-instance",
        "DIARY_DIGEST_HOUR": "null",
        # A killed scheduler's claims are taken over when their lease ends (60 s by default,
        # so within two minutes of a one-minute pass; 5 s keeps the benchmark short).
        "DIARY_OUTBOX_LEASE_SECONDS": "5",
    }  # reminders per reminder owed are counted: no digest
    processes = []
    try:
        started = time.perf_counter()
        tokens = build_study(env, args.participants, args.silent)
        print(
            f"study built: {args.participants} submitting + {args.silent} silent participants "
            f"in {time.perf_counter() - started:.1f} s"
        )
        for port in ports:
            processes.append(
                subprocess.Popen(
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
                        "wsgi:app",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for _ in range(2):
            processes.append(
                subprocess.Popen(
                    [str(BIN / "flask"), "--app", "wsgi", "diary", "scheduler", "--interval", "1"],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        servers = [f"http://127.0.0.1:{port}" for port in ports]
        deadline = time.monotonic() + 60
        for server in servers:
            while True:
                try:
                    if requests.get(f"{server}/healthz", timeout=2).status_code == 200:
                        break
                except requests.RequestException:  # not up yet, or busy starting
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{server} did not start")
                time.sleep(0.2)

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=min(32, len(tokens))) as pool:
            pending = pool.map(lambda item: submit_through(servers, *item), enumerate(tokens))
            # Mid-run, the second app server and the second scheduler die (SIGKILL: no
            # goodbye, claims left leased, requests cut mid-flight).
            while DONE["participants"] < len(tokens) // 3 and time.perf_counter() - started < 120:
                time.sleep(0.05)
            killed_at = DONE["participants"]
            for process in (processes[1], processes[3]):
                process.kill()
            results = list(pending)
        submit_seconds = time.perf_counter() - started
        print(f"killed app server 2 and scheduler 2 after {killed_at} of {len(tokens)} participants had submitted")
        # Give the schedulers time to send every reminder owed (each passes once a second).
        deadline = time.monotonic() + 60
        while (
            sum(
                inbox.recipients[f"p{n}@example.org"] > 0
                for n in range(args.participants, args.participants + args.silent)
            )
            < args.silent
            and time.monotonic() < deadline
        ):
            time.sleep(0.5)
        time.sleep(3)  # a few more passes: anything sent twice would show now
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        smtp.stop()

    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        stored = connection.execute("SELECT count(*) FROM submission").fetchone()[0]
        per_assessment = connection.execute(
            "SELECT count(*) FROM (SELECT assessment_id FROM submission GROUP BY assessment_id "
            "HAVING count(*) > 1) AS doubled"
        ).fetchone()[0]
        owed = connection.execute(
            "SELECT count(*) FROM reminder r JOIN assessment a ON a.id = r.assessment_id "
            "LEFT JOIN submission s ON s.assessment_id = a.id WHERE s.id IS NULL AND r.due_at <= now()"
        ).fetchone()[0]
    statuses = [status for result in results for status in result]
    server_errors = sum(status >= 500 for status in statuses)
    accepted = sum(1 for result in results if result[3] in (302, 303))
    silent_mail = [
        inbox.recipients[f"p{n}@example.org"] for n in range(args.participants, args.participants + args.silent)
    ]
    sent_for_owed = sum(silent_mail)
    print(
        f"submits: {len(tokens)} participants x 2 servers in {submit_seconds:.1f} s; statuses {dict(Counter(statuses))}"
    )
    print(f"submissions stored: {stored} (participants whose first submit was accepted: {accepted})")
    print(f"duplicates: {per_assessment + max(0, stored - len(tokens))}")
    print(f"losses: {max(0, accepted - stored)}")
    print(
        f"5xx: {server_errors}; requests retried on the live server after meeting the dead one: {RETRIED['connection']}"
    )
    print(
        f"reminders owed (silent participants' open entries): {owed}; sent to them: {sent_for_owed}; "
        f"per reminder owed: {sent_for_owed / owed if owed else 0:.3f} "
        f"(min {min(silent_mail)}, max {max(silent_mail)} per participant)"
    )
    ratio = sent_for_owed / owed if owed else 0
    print(
        f"RESULT deployment-postgresql stored={stored} duplicates={per_assessment} "
        f"losses={max(0, accepted - stored)} server_errors={server_errors} reminders_per_owed={ratio:.3f}"
    )
    with psycopg.connect(args.database.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


if __name__ == "__main__":
    main()
