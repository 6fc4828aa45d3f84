"""An installable diary that works offline, with honest timestamps: the manifest and its icons,
the service worker's shell, and entries made without a connection judged by when they were made
(the phone's clock checked against the server's, the protocol's offline grace, the window)."""

from __future__ import annotations

import json
import re
import struct
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from diary.exports import write_bundle
from diary.extensions import db
from diary.models import AuditEvent, Submission, now_utc
from diary.study.trial import protocol_of

from .conftest import answers_for, assessment_of
from .participant_helpers import csrf_from, key_from, participant_with_day1_open, sign_in

STATIC = Path(__file__).resolve().parent.parent / "static"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_manifest_makes_the_diary_installable(client, study):
    participant, token = participant_with_day1_open(study, code="P-MANIF")
    today = sign_in(client, token).get_data(as_text=True)
    link = re.search(r'<link rel="manifest" href="([^"]+)"', today).group(1)
    response = client.get(link)
    assert response.headers["Content-Type"].startswith("application/manifest+json")
    manifest = json.loads(response.data)
    for member in ("name", "short_name", "start_url", "scope", "display", "icons", "theme_color"):
        assert manifest.get(member), member
    assert (manifest["start_url"], manifest["scope"], manifest["display"]) == ("/p/today", "/p/", "standalone")
    sizes = {}
    for icon in manifest["icons"]:
        assert icon["src"].startswith("/") and icon["type"] == "image/png"
        image = client.get(icon["src"])
        assert image.status_code == 200
        width, height = png_size(image.data)
        assert f"{width}x{height}" == icon["sizes"]
        sizes.setdefault(icon.get("purpose", "any"), set()).add(icon["sizes"])
    assert {"192x192", "512x512"} <= sizes["any"] and sizes["maskable"] == {"512x512"}


def test_the_service_worker_precaches_only_the_diarys_own_files(client, study):
    worker = client.get("/p/sw.js")
    assert worker.headers["Content-Type"].startswith("text/javascript")
    shell = json.loads(re.search(r"var SHELL = (\[[^\]]*\]);", worker.get_data(as_text=True)).group(1))
    assert "/p/offline" in shell and len(shell) >= 6
    for url in shell:
        assert url.startswith("/") and not url.startswith("//"), url  # local addresses only
        assert client.get(url).status_code == 200, url
    assert client.get("/p/offline").status_code == 200


def _offline_entry(client, participant, protocol, *, made_ago, clock_off=timedelta(0), key=None, stamp=None):
    """The JSON diary.js sends for an entry made ``made_ago`` before now on a phone whose clock
    is ``clock_off`` ahead of the real time, on a form the phone had kept since a few minutes
    before it was filled in (its stamp says when the server gave it)."""
    from diary.entries.recording import entry_stamp

    day1 = assessment_of(participant, 1, "D1")
    page = client.get(f"/p/entry/{day1.id}").get_data(as_text=True)
    served = max(day1.window_open, now_utc() - made_ago - timedelta(minutes=5))
    stamp = stamp or entry_stamp(day1, participant.id, served, client.application.config["SECRET_KEY"])
    phone_now = now_utc() + clock_off
    body = {
        "fields": {**answers_for(protocol, "D1", vas=37), "stamp": stamp},
        "key": key or key_from(page),
        "made_at": (phone_now - made_ago).isoformat().replace("+00:00", "Z"),
        "device_now": phone_now.isoformat().replace("+00:00", "Z"),
    }
    return day1, client.post(f"/p/entry/{day1.id}/sync", json=body, headers={"X-CSRFToken": csrf_from(page)}), body


def test_an_offline_entry_counts_when_it_was_made_and_a_second_send_stores_nothing(client, study, tmp_path):
    protocol = protocol_of(study.current_protocol_version)
    participant, token = participant_with_day1_open(study, code="P-OFFL01", hours_ago=23)
    sign_in(client, token)
    day1, response, body = _offline_entry(
        client, participant, protocol, made_ago=timedelta(hours=2, minutes=30), clock_off=timedelta(minutes=3)
    )
    assert response.status_code == 201 and response.get_json()["status"] == "stored"
    again = client.post(
        f"/p/entry/{day1.id}/sync",
        json=body,
        headers={"X-CSRFToken": csrf_from(client.get("/p/today").get_data(as_text=True))},
    )
    assert again.status_code == 200 and again.get_json()["status"] == "already"
    submissions = db.session.scalars(select(Submission).where(Submission.assessment_id == day1.id)).all()
    assert len(submissions) == 1
    stored = submissions[0]
    # Made 2 h 30 min ago by the phone's clock, which runs 3 minutes fast: corrected by the offset.
    assert abs(stored.collected_at - (now_utc() - timedelta(hours=2, minutes=30))) < timedelta(seconds=20)
    assert stored.submitted_at - stored.collected_at > timedelta(hours=2)
    assert stored.submission_mode == "offline_sync" and stored.device_time == body["made_at"]
    write_bundle(tmp_path, study=study, now=now_utc(), true_allocation=True)
    rows = [r for r in (tmp_path / "assessments.csv").read_text().splitlines()[1:] if ",D1," in r]
    assert "offline_sync" in rows[0]


def test_an_offline_entry_past_the_grace_is_refused_and_recorded(client, study):
    protocol = protocol_of(study.current_protocol_version)
    participant, token = participant_with_day1_open(study, code="P-OFFL02", hours_ago=23)
    sign_in(client, token)
    # Made inside the window on the phone's clock (hence within the window's hours), but the grace
    # is measured too: an entry made 25 h ago cannot be in this window, so shrink the grace.
    study_protocol = protocol.offline_grace
    assert study_protocol.nominal == timedelta(hours=24)
    day1, response, _ = _offline_entry(client, participant, protocol, made_ago=timedelta(hours=25))
    assert response.status_code == 409
    message = response.get_json()["message"]
    assert "more than 24 hours" in message
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "offline_entry_refused")).one()
    assert event.reason == message and event.participant_id == participant.id
    assert db.session.scalar(select(func.count()).select_from(Submission)) == 0


def test_an_offline_entry_made_after_the_window_closed_is_refused(client, study):
    protocol = protocol_of(study.current_protocol_version)
    participant, token = participant_with_day1_open(study, code="P-OFFL03", hours_ago=23)
    sign_in(client, token)
    day1 = assessment_of(participant, 1, "D1")
    # Made before D1 opened (it opens 20 h after the start; this is 21 h before now = 2 h after it).
    made_ago = now_utc() - (day1.window_open - timedelta(hours=1))
    _, response, _ = _offline_entry(client, participant, protocol, made_ago=made_ago)
    assert response.status_code == 409 and "not open yet" in response.get_json()["message"]
    assert db.session.scalar(select(func.count()).select_from(Submission)) == 0


def test_a_phone_clock_far_off_is_refused(client, study):
    protocol = protocol_of(study.current_protocol_version)
    participant, token = participant_with_day1_open(study, code="P-OFFL04", hours_ago=23)
    sign_in(client, token)
    _, response, _ = _offline_entry(
        client, participant, protocol, made_ago=timedelta(minutes=30), clock_off=timedelta(hours=-2)
    )
    assert response.status_code == 409 and "120 minutes away from the real time" in response.get_json()["message"]
    assert db.session.scalar(select(func.count()).select_from(Submission)) == 0
    assert (
        db.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "offline_entry_refused")
        )
        == 1
    )


def test_a_sync_without_csrf_or_with_garbage_stores_nothing(client, study):
    protocol = protocol_of(study.current_protocol_version)
    participant, token = participant_with_day1_open(study, code="P-OFFL05", hours_ago=23)
    sign_in(client, token)
    day1 = assessment_of(participant, 1, "D1")
    csrf = csrf_from(client.get("/p/today").get_data(as_text=True))
    no_csrf = client.post(f"/p/entry/{day1.id}/sync", json={"fields": {}, "key": "abcdefgh12"})
    assert no_csrf.status_code == 400
    for body in (
        {"fields": "x"},
        {"fields": {}, "key": "short"},
        {"fields": answers_for(protocol, "D1"), "key": "abcdefgh12", "made_at": "yesterday", "device_now": "now"},
    ):
        response = client.post(f"/p/entry/{day1.id}/sync", json=body, headers={"X-CSRFToken": csrf})
        assert response.status_code == 400, body
    other, _ = participant_with_day1_open(study, code="P-OFFL06", hours_ago=23)
    theirs = assessment_of(other, 1, "D1")
    assert (
        client.post(f"/p/entry/{theirs.id}/sync", json={"fields": {}}, headers={"X-CSRFToken": csrf}).status_code == 404
    )
    assert db.session.scalar(select(func.count()).select_from(Submission)) == 0


@pytest.mark.parametrize("path", ["/p/sw.js", "/p/manifest.webmanifest"])
def test_the_worker_and_the_manifest_revalidate_with_a_304(client, study, path):
    """A phone checks both on every start (no-cache): unchanged, the answer is a 304 with no
    body, compressed or not; a changed body (another language) has another ETag."""
    first = client.get(path, headers={"Accept-Encoding": "gzip"})
    etag = first.headers["ETag"]
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-cache" and etag
    again = client.get(path, headers={"If-None-Match": etag, "Accept-Encoding": "gzip"})
    assert again.status_code == 304 and again.data == b""
    # Uncompressed, the body (and so the ETag) is another one, revalidated the same way.
    plain_etag = client.get(path).headers["ETag"]
    plain = client.get(path, headers={"If-None-Match": plain_etag})
    assert plain.status_code == 304 and plain.data == b""
    stale = client.get(path, headers={"If-None-Match": '"not-this-one"'})
    assert stale.status_code == 200 and stale.data
    if path.endswith("webmanifest"):
        spanish = client.get(path, headers={"Accept-Language": "es"})
        assert spanish.status_code == 200 and spanish.headers["ETag"] != etag
