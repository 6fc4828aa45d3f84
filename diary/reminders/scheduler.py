"""The scheduler process: an APScheduler BlockingScheduler making one dispatch pass a minute,
and counting the study figures each minute.

Web server processes never run it; it is started as ``flask --app wsgi diary scheduler``.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from apscheduler.schedulers.blocking import BlockingScheduler

log = logging.getLogger(__name__)
# When this scheduler process started (its heartbeat row says so).
STARTED = datetime.now(UTC)


def dispatch_pass(app) -> None:
    """One pass over the reminder outbox, then this scheduler's heartbeat; a failing pass is
    logged (and beats nothing, so the status page sees it) and the next one retries."""
    from ..extensions import db
    from ..models import now_utc
    from ..operations import status
    from . import dispatch

    with app.app_context():
        started = time.perf_counter()
        try:
            result = dispatch.run_pass(app)
            status.beat(now_utc(), result.summary(), round((time.perf_counter() - started) * 1000), STARTED)
            db.session.commit()
        except Exception:
            log.exception("reminder dispatch pass failed")
            db.session.rollback()
            return
        for text in result.unsent_texts:
            # Nothing configured could carry it: printed whole, so the console is the channel.
            print(f"\n{'=' * 72}\n{text.rstrip()}\n{'=' * 72}", flush=True)
        if result.sent or result.failed or result.expired or result.not_sent:
            log.info("reminders: %s", result.summary())
            print(f"reminders: {result.summary()}", flush=True)


def figures_pass(app) -> None:
    """Count the study figures the coordinator's pages show (``figures.refresh``)."""
    from ..extensions import db
    from ..models import now_utc
    from ..reporting.figures import refresh_all

    with app.app_context():
        try:
            refresh_all(now_utc())
        except Exception:
            log.exception("counting the study figures failed")
            db.session.rollback()


def build_scheduler(app, interval: int = 60) -> BlockingScheduler:
    scheduler = BlockingScheduler(timezone="UTC")
    # One job with a fixed id; coalesce so a backlog after a pause becomes one pass, and a grace
    # so a pass delayed by a busy machine still runs instead of being skipped.
    # The first pass runs at start-up, so reminders owed while the scheduler was down go out at
    # once (those still inside their window; the rest are expired by the pass).
    scheduler.add_job(
        dispatch_pass,
        "interval",
        seconds=interval,
        args=[app],
        id="dispatch",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=max(30, interval // 2),
        replace_existing=True,
        next_run_time=datetime.now(UTC),
    )
    # The study figures, each minute whatever the dispatch interval: pages show them while they
    # are at most FIGURES_MAX_AGE_SECONDS old.
    scheduler.add_job(
        figures_pass,
        "interval",
        seconds=60,
        args=[app],
        id="figures",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=30,
        replace_existing=True,
        next_run_time=datetime.now(UTC),
    )
    return scheduler


def run_scheduler(app, interval: int = 60) -> None:
    scheduler = build_scheduler(app, interval)
    log.info("scheduler started: a dispatch pass every %s s", interval)
    print(f"diary scheduler running: a dispatch pass every {interval} s (Ctrl-C stops it)", flush=True)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
