"""The fatigue scale as an instrument, off the browser: device facts per entry (the rule, both
write paths, the export), the protocol's show_value and minimum viewport, and the honest
participant pages (when an entry was answered, the PIN page's study and phone)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from diary.entries.recording import SUBMISSION_COLUMNS, device_facts, record_submission
from diary.extensions import db
from diary.models import Submission, now_utc
from diary.protocol import parse_protocol
from diary.study.trial import protocol_of

from .conftest import answers_for, assessment_of
from .participant_helpers import participant_with_day1_open, sign_in

ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.81 Mobile Safari/537.36"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
SAMSUNG = (
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0"
EDGE = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
    "Mobile Safari/537.36 EdgA/131.0.2903.87"
)


@pytest.mark.parametrize(
    "agent, browser",
    [
        (ANDROID_CHROME, "Chrome 131"),
        (IPHONE_SAFARI, "Safari 17"),
        (SAMSUNG, "Samsung Internet 25"),
        (FIREFOX, "Firefox 133"),
        (EDGE, "Edge 131"),
        ("curl/8.5", None),
        (None, None),
    ],
)
def test_the_browser_family_and_major_version_come_from_the_user_agent(agent, browser):
    assert device_facts({}, agent).get("browser") == browser


def test_device_facts_keep_plausible_numbers_and_drop_the_rest():
    """Sizes, ratio, zoom and text scale in range are kept; wrong types, NaN, out of range, or
    a body that is not JSON are left out (never a refusal: the answers are what counts)."""
    facts = device_facts(
        '{"viewport_width": 390.4, "viewport_height": 844, "device_pixel_ratio": 2.625, "zoom": 1, "text_scale": 1.25}',
        ANDROID_CHROME,
    )
    assert facts == {
        "viewport_width": 390,
        "viewport_height": 844,
        "device_pixel_ratio": 2.625,
        "zoom": 1.0,
        "text_scale": 1.25,
        "browser": "Chrome 131",
    }
    junk = device_facts(
        {
            "viewport_width": "390",
            "viewport_height": 99999,
            "device_pixel_ratio": float("nan"),
            "zoom": True,
            "text_scale": -1,
            "extra": "fingerprint",
        },
        None,
    )
    assert junk == {}
    assert device_facts("{not json", None) == {} and device_facts("x" * 600, None) == {}
    assert device_facts(["a list"], None) == {}


def test_a_submit_stores_the_device_facts_on_either_engine(app, study):
    """Both write paths (SQLite statements, PostgreSQL's single statement) take the same columns."""
    protocol = protocol_of(study.current_protocol_version)
    participant, _ = participant_with_day1_open(study, code="P-DEV01")
    day1 = assessment_of(participant, 1, "D1")
    record_submission(
        day1,
        answers_for(protocol, "D1"),
        now=now_utc(),
        actor="t",
        device=device_facts(
            {"viewport_width": 390, "viewport_height": 844, "device_pixel_ratio": 3, "zoom": 1, "text_scale": 1.1},
            IPHONE_SAFARI,
        ),
    )
    db.session.commit()
    db.session.expire_all()
    stored = db.session.scalars(select(Submission)).one()
    assert (
        stored.viewport_width,
        stored.viewport_height,
        stored.device_pixel_ratio,
        stored.zoom,
        stored.text_scale,
        stored.browser,
    ) == (390, 844, 3.0, 1.0, 1.1, "Safari 17")
    written = {column.name for column in Submission.__table__.columns} - {"id"}
    assert set(SUBMISSION_COLUMNS) == written  # a new column is written by both paths or the test says so


def test_the_export_carries_the_device_facts(app, client, study, tmp_path):
    from diary.exports import write_bundle

    from .participant_helpers import csrf_from, key_from

    protocol = protocol_of(study.current_protocol_version)
    participant, token = participant_with_day1_open(study, code="P-DEV02")
    sign_in(client, token)
    day1 = assessment_of(participant, 1, "D1")
    page = client.get(f"/p/entry/{day1.id}").get_data(as_text=True)
    form = {
        **answers_for(protocol, "D1"),
        "csrf_token": csrf_from(page),
        "idempotency_key": key_from(page),
        "step": "submit",
        "device": '{"viewport_width": 412, "viewport_height": 915, "device_pixel_ratio": 2.625}',
    }
    response = client.post(f"/p/entry/{day1.id}", data=form, headers={"User-Agent": ANDROID_CHROME})
    assert response.status_code == 302
    write_bundle(tmp_path, study=study, now=now_utc())
    import csv

    rows = [row for row in csv.DictReader((tmp_path / "assessments.csv").open()) if row["submitted_utc"]]
    assert [(r["viewport_width"], r["viewport_height"], r["device_pixel_ratio"], r["browser"]) for r in rows] == [
        ("412", "915", "2.625", "Chrome 131")
    ]


# --- The protocol's say over the scale -------------------------------------------------------------

SHIPPED = "diary/protocols/ketamine-fatigue-crossover.yaml"


def _protocol_text(**replacements):
    from pathlib import Path

    text = (Path(__file__).parent.parent / SHIPPED).read_text(encoding="utf-8")
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new, 1)
    return text


def test_show_value_and_the_minimum_viewport_are_read_from_the_protocol():
    shipped = parse_protocol(_protocol_text())
    vas = [item for i in shipped.instruments.values() for item in i.items if item.type == "vas"][0]
    assert vas.show_value is False and shipped.min_viewport_px == 320
    changed = parse_protocol(
        _protocol_text(
            **{
                "offline_grace: 24h": "offline_grace: 24h\nmin_viewport_px: 360",
                "type: vas": "type: vas\n        show_value: true",
            }
        )
    )
    vas = [item for i in changed.instruments.values() for item in i.items if item.type == "vas"][0]
    assert vas.show_value is True and changed.min_viewport_px == 360


def test_a_bad_minimum_viewport_is_named_by_the_checker():
    from diary.protocol import ProtocolError

    with pytest.raises(ProtocolError, match="min_viewport_px"):
        parse_protocol(_protocol_text(**{"offline_grace: 24h": "offline_grace: 24h\nmin_viewport_px: wide"}))


def test_the_scale_shows_its_number_only_when_the_protocol_says_so(app, client, study):
    """show_value: a place for the number, empty until the mark is placed; none otherwise."""
    from flask import render_template_string

    from diary.protocol.model import Item

    with app.test_request_context():
        template = '{% import "participant/macros.html" as w %}{{ w.vas("f.f", item, form, none) }}'
        item = Item(id="f", type="vas", text="How?", min_label="none", max_label="worst", show_value=True)
        untouched = render_template_string(template, item=item, form={})
        placed = render_template_string(template, item=item, form={"f.f": "37", "f.f.touched": "1"})
        hidden = render_template_string(
            template,
            item=Item(id="f", type="vas", text="How?", min_label="none", max_label="worst"),
            form={"f.f": "37", "f.f.touched": "1"},
        )
    assert '<p class="vas-value" aria-hidden="true"></p>' in untouched and "aria-valuenow" not in untouched
    assert '<p class="vas-value" aria-hidden="true">37</p>' in placed and 'aria-valuenow="37"' in placed
    assert "vas-value" not in hidden and 'aria-valuenow="37"' in hidden


# --- Honest participant pages --------------------------------------------------------------------


def test_my_entries_say_when_an_entry_was_answered_and_when_it_arrived(client, study):
    """An entry made offline two hours before it reached the server shows both times."""
    protocol = protocol_of(study.current_protocol_version)
    participant, token = participant_with_day1_open(study, code="P-HIST1", hours_ago=25)
    day1 = assessment_of(participant, 1, "D1")
    answered = now_utc() - timedelta(hours=2)
    record_submission(day1, answers_for(protocol, "D1"), now=now_utc(), actor="t", made_offline_at=answered)
    db.session.commit()
    sign_in(client, token)
    page = client.get("/p/history").get_data(as_text=True)
    assert "Answered" in page and "Received by the diary" in page
    from diary.i18n import full_datetime

    assert full_datetime(answered, participant.timezone, "en") in page


def test_the_pin_page_names_the_study_and_the_sites_phone(client, study):
    participant, token = participant_with_day1_open(study, code="P-PIN01")
    page = client.get(f"/p/{token}").get_data(as_text=True)
    assert study.name in page and 'href="tel:+13015550100"' in page
