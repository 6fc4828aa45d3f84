"""Concurrent writers on one SQLite file: they wait for each other, and none fails."""

import random
from datetime import timedelta

from sqlalchemy import func, select

from diary.dosing.infusions import record_dose
from diary.extensions import db
from diary.models import Assessment, Submission
from diary.participants.enrolment import enroll
from diary.study.trial import ensure_study, protocol_of

from .conftest import NOW, answers_for, make_app, worker_context

PROCESSES = 4


def _worker(url: str, seed: int, queue) -> None:
    """Try to submit every assessment, in a shuffled order; report what happened."""
    from diary.entries.recording import record_submission
    from diary.errors import Refused

    app = make_app(url)
    outcome = {"created": 0, "refused": 0, "errors": []}
    with app.app_context():
        ids = list(db.session.scalars(select(Assessment.id)))
        random.Random(seed).shuffle(ids)
        for assessment_id in ids:
            try:
                assessment = db.session.get(Assessment, assessment_id)
                protocol = protocol_of(assessment.protocol_version)
                form = answers_for(protocol, assessment.timepoint, vas=seed)
                _, created = record_submission(
                    assessment,
                    form,
                    now=assessment.window_open + timedelta(minutes=1),
                    actor=f"worker{seed}",
                    idempotency_key=f"w{seed}-{assessment_id}",
                )
                db.session.commit()
                outcome["created"] += created
            except Refused:
                db.session.rollback()
                outcome["refused"] += 1
            except Exception as error:  # anything else is what this test exists to catch
                db.session.rollback()
                outcome["errors"].append(repr(error))
            finally:
                db.session.expire_all()
    queue.put(outcome)


def test_concurrent_writers_on_one_sqlite_file(tmp_path):
    """Four processes race to submit the same 50 assessments: each is stored once, none errors."""
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    app = make_app(url)
    with app.app_context():
        db.create_all()
        study, _ = ensure_study()
        for number in range(5):
            participant, _ = enroll(
                study,
                site="NIH-CC",
                timezone="Europe/Paris",
                sequence="BA",
                actor="test",
                now=NOW - timedelta(days=30),
                code=f"P-RACE{number}",
            )
            record_dose(participant, 1, NOW - timedelta(days=20), actor="test", now=NOW)
        db.session.commit()
        total = db.session.scalar(select(func.count()).select_from(Assessment))
        db.engine.dispose()

    context = worker_context()
    queue = context.Queue()
    workers = [context.Process(target=_worker, args=(url, seed, queue)) for seed in range(1, PROCESSES + 1)]
    for worker in workers:
        worker.start()
    outcomes = [queue.get(timeout=180) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)

    assert total == 50
    assert [o["errors"] for o in outcomes] == [[]] * PROCESSES
    assert sum(o["created"] for o in outcomes) == total
    assert sum(o["refused"] for o in outcomes) == total * (PROCESSES - 1)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Submission)) == total
        db.engine.dispose()
