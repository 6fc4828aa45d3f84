"""The export at pyarrow's pace (issue 32): its tables take each assessment's state from the
database (``state_sql``) and read rows as named tuples; the derived times are cut to the second
without building cut times. Each shortcut is held to the slow form it replaced."""

from __future__ import annotations

import csv
import json
import random
from datetime import UTC, datetime, timedelta, timezone
from itertools import groupby
from zoneinfo import ZoneInfo

import orjson

from diary.dosing import assessments
from diary.exports import define, sdtm, write_bundle
from diary.exports.tables import ExportContext, exported_status, seconds_between
from diary.exports.writers import iso_utc
from diary.extensions import db
from diary.models import Participant, Period
from diary.reporting.adherence import Tally
from diary.study.trial import protocol_of

from .test_dashboard_scale import varied_study


def test_seconds_between_equals_the_difference_of_the_times_cut_to_the_second():
    """Both orders (a baseline is given before the infusion), across days, at the microsecond
    edges: the same whole seconds as cutting each time first."""
    rng = random.Random(32)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    edges = [0, 1, 999_999, 500_000]
    for _ in range(5000):
        later = start + timedelta(
            seconds=rng.randrange(-(10**7), 10**7), microseconds=rng.choice(edges + [rng.randrange(10**6)])
        )
        earlier = start + timedelta(
            seconds=rng.randrange(-(10**7), 10**7), microseconds=rng.choice(edges + [rng.randrange(10**6)])
        )
        cut = later.replace(microsecond=0) - earlier.replace(microsecond=0)
        assert seconds_between(later, earlier) == cut.total_seconds(), (later, earlier)
        assert isinstance(seconds_between(later, earlier), int)


def test_iso_utc_writes_whole_seconds_in_utc():
    assert iso_utc(datetime(2026, 1, 5, 14, 0, 0, 999_999, tzinfo=UTC)) == "2026-01-05T14:00:00Z"
    # A time in another zone is written in UTC.
    eastern = datetime(2026, 1, 5, 9, 30, 15, tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    assert iso_utc(eastern) == "2026-01-05T09:30:15Z"


def test_iso_utc_is_the_utc_isoformat_cut_to_the_second():
    """Formatted from the time's fields, it writes what ``isoformat`` writes of the same moment
    in UTC: any year (zero-padded below 1000), any zone, any microsecond."""
    rng = random.Random(6)
    zones = [UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"), timezone(timedelta(hours=-9, minutes=-30))]
    for _ in range(5000):
        moment = datetime(2, 1, 1, tzinfo=UTC) + timedelta(
            days=rng.randrange(3_650_000),
            seconds=rng.randrange(86400),
            microseconds=rng.choice([0, 999_999, rng.randrange(10**6)]),
        )
        shown = moment.astimezone(rng.choice(zones))
        assert iso_utc(shown) == moment.isoformat(timespec="seconds")[:19] + "Z"


def _read(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_exported_states_are_the_ones_python_judges(study, tmp_path):
    """Every assessment's status in the assessments and time-course tables, and every period's
    adherence counts, are what ``state_at`` gives for it, on a study with every kind of state
    (planned only, a corrected start leaving after_dose and out_of_window, a withdrawal)."""
    now = varied_study(study)
    protocol = protocol_of(study.current_protocol_version)
    optional = {tp.code: tp.optional for tp in protocol.timepoints}
    rows = db.session.execute(
        assessments.rows_query()
        .where(Participant.study_id == study.id)
        .order_by(Participant.code, Period.number, assessments.Assessment.target)
    ).all()
    expected = {
        (row.code, str(row.period), row.timepoint): exported_status(
            assessments.state_at(row, now), optional[row.timepoint]
        )
        for row in rows
    }
    assert {status for status in expected.values()} >= {
        "upcoming",
        "completed",
        "after_dose",
        "out_of_window",
        "not_applicable",
    }
    write_bundle(tmp_path, study=study, now=now)

    exported = {
        (r["participant_id"], r["period"], r["timepoint"]): r["status"] for r in _read(tmp_path / "assessments.csv")
    }
    assert exported == expected

    plan = protocol.endpoints
    timecourse = _read(tmp_path / f"{plan.timecourse_table}.csv")
    assert timecourse
    for r in timecourse:
        assert r["status"] == expected[(r["participant_id"], r["period"], r["timepoint"])]

    adherence = {(r["participant_id"], r["period"]): r for r in _read(tmp_path / "adherence.csv")}
    for (code, period), group in groupby(rows, key=lambda r: (r.code, r.period)):
        tally = Tally()
        for row in group:
            tally.add(assessments.state_at(row, now), optional[row.timepoint])
        shown = adherence[(code, str(period))]
        assert (
            int(shown["scheduled"]),
            int(shown["completed"]),
            int(shown["completed_late"]),
            int(shown["missed"]),
        ) == (
            tally.scheduled,
            tally.completed,
            tally.completed_late,
            tally.missed,
        ), code


def test_named_rows_carry_the_same_values_as_the_database_rows(study):
    """``ExportContext.stream(named=True)``: the same rows, in the same order, read by name."""
    now = varied_study(study)
    protocol = protocol_of(study.current_protocol_version)
    ctx = ExportContext(connection=db.session.connection(), study=study, protocol=protocol, blinded=True, now=now)
    statement = assessments.rows_query().where(ctx.in_scope).order_by(Participant.code, Period.number)
    plain = list(ctx.stream(statement))
    named = list(ctx.stream(statement, named=True))
    assert len(named) == len(plain) > 20
    assert [tuple(row) for row in named] == [tuple(row) for row in plain]
    assert [(row.code, row.timepoint, row.window_open) for row in named] == [
        (row.code, row.timepoint, row.window_open) for row in plain
    ]


def test_orjson_writes_the_bytes_json_dumps_writes():
    """The FHIR NDJSON is written by orjson: compact, UTF-8, control characters escaped, as
    ``json.dumps(ensure_ascii=False, separators=(",", ":"))`` writes it (random text of control
    characters, Latin, CJK, emoji and the line separators JavaScript chokes on)."""
    rng = random.Random(7)
    alphabet = [chr(c) for c in [*range(0, 160), 0x2028, 0x2029, 0xE9, 0xF1, 0x4E2D, 0x1F600, 0xFEFF]]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))
        resource = {"linkId": text, "answer": [{"valueInteger": rng.randrange(-100, 101)}], "n": None, "t": True}
        assert orjson.dumps(resource).decode() == json.dumps(resource, ensure_ascii=False, separators=(",", ":"))


def test_the_fhir_file_reads_back_as_json_dumps_would_write_it(study, tmp_path):
    """Every line of the QuestionnaireResponse file, read and written again by the standard
    library, is the same line (so a reader sees no difference from the library it replaced)."""
    varied_study(study)
    write_bundle(tmp_path, study=study, now=datetime.now(UTC), standards=True)
    lines = (tmp_path / "fhir" / "QuestionnaireResponse.ndjson").read_text(encoding="utf-8").splitlines()
    assert len(lines) > 10
    for line in lines:
        assert json.dumps(json.loads(line), ensure_ascii=False, separators=(",", ":")) == line


def test_a_bundle_reads_the_measure_once_and_writes_the_same_time_course(study, tmp_path, monkeypatch):
    """The endpoints pass keeps the time course's rows for the next table: the bundle's time
    course is byte for byte the one the table builds on its own, from one read of the study."""
    from diary.exports import tables
    from diary.exports.schema import tables_for
    from diary.exports.writers import write_csv

    now = varied_study(study)
    protocol = protocol_of(study.current_protocol_version)
    plan = protocol.endpoints
    reads = []
    measure_periods = tables._measure_periods
    monkeypatch.setattr(tables, "_measure_periods", lambda ctx: reads.append(ctx) or measure_periods(ctx))
    write_bundle(tmp_path / "bundle", study=study, now=now)
    assert len(reads) == 1
    ctx = ExportContext(connection=db.session.connection(), study=study, protocol=protocol, blinded=True, now=now)
    ctx.dummies = reads[0].dummies  # the bundle's blinded export carries the stored dummy allocation
    ctx.dummy = reads[0].dummy
    alone = tmp_path / "alone.csv"
    write_csv(alone, tables_for(protocol)[plan.timecourse_table], tables.timecourse_table(ctx))
    assert len(reads) == 2  # on its own it reads the study itself
    bundled = (tmp_path / "bundle" / f"{plan.timecourse_table}.csv").read_bytes()
    assert bundled == alone.read_bytes() and bundled.count(b"\n") > 20


def test_the_spool_gives_back_every_row_in_order_and_only_after_a_whole_pass(study, monkeypatch):
    from diary.exports import tables

    monkeypatch.setattr(tables.Spool, "BATCH", 3)
    spool = tables.Spool()
    added = [(n, f"row {n}", None, 1.5) for n in range(10)]
    for start in range(0, 10, 4):
        spool.add(added[start : start + 4])
    assert list(spool) == added
    # An endpoints table given up half way hands no time course on.
    now = varied_study(study)
    protocol = protocol_of(study.current_protocol_version)
    ctx = ExportContext(
        connection=db.session.connection(), study=study, protocol=protocol, blinded=True, now=now, spool_timecourse=True
    )
    endpoints = tables.endpoints_table(ctx)
    next(endpoints)
    endpoints.close()
    assert ctx.timecourse_spool is None
    assert len(list(tables.endpoints_table(ctx))) > 1 and ctx.timecourse_spool is not None


def test_the_define_profile_taken_while_writing_is_the_one_the_written_domains_give(study, tmp_path, monkeypatch):
    """The define's lengths, decimals and codelists come from each domain's rows as they are
    written (``DomainProfile``), not from reading the CSVs back: on a study with every kind of
    state they are what the written CSVs give, worked out the way the define did before."""
    now = varied_study(study)
    written = []
    real = sdtm.write_define

    def write_define(folder, domains, **study_facts):
        written.extend(domains)
        return real(folder, domains, **study_facts)

    monkeypatch.setattr(sdtm, "write_define", write_define)
    write_bundle(tmp_path, study=study, now=now, standards=True)
    assert {domain.name for domain in written} == set(sdtm.DOMAINS)
    checked = 0
    for domain in written:
        with open(tmp_path / "sdtm" / f"{domain.name.lower()}.csv", newline="", encoding="utf-8") as handle:
            header, *rows = list(csv.reader(handle))
        for index, variable in enumerate(domain.variables):
            values = [row[index] for row in rows if row[index] != ""]
            assert header[index] == variable.name
            assert domain.profile.lengths[index] == max((len(value) for value in values), default=1)
            if index in domain.profile.decimals:
                assert domain.profile.decimals[index] == max(
                    (len(value.split(".", 1)[1]) if "." in value else 0 for value in values), default=0
                )
            if variable.name in domain.profile.decodes:
                decode_by = define.CODELISTS[variable.name]
                decodes = {}
                for row in rows:
                    if row[index]:
                        decodes.setdefault(row[index], row[header.index(decode_by)] if decode_by in header else None)
                assert domain.profile.decodes[variable.name] == decodes
                checked += bool(decodes)
    assert checked >= 3  # codelists with values (ARMCD, sex, QS test codes...) were compared


def test_a_domain_profile_keeps_the_longest_value_the_most_decimals_and_the_first_decode():
    variables = [
        sdtm.Variable("QSTESTCD", "Question Short Name"),
        sdtm.Variable("QSTEST", "Question Name"),
        sdtm.Variable("QSSTRESN", "Numeric Finding in Standard Units", "double"),
    ]
    profile = define.DomainProfile(variables)
    # Within a batch and across batches, a value keeps the first decode met.
    profile.add([["FATIGUE", "Fatigue", "12.5"], ["ENERGY", "Energy now", "3"], ["FATIGUE", "Worn out", "1"]])
    profile.add([["FATIGUE", "Tiredness", "0.125"], ["", "", ""], ["ENERGY", "Energy", "1.5"]])
    profile.add([])
    assert profile.lengths == [7, 10, 5]
    assert profile.decimals == {2: 3}
    assert profile.decodes["QSTESTCD"] == {"FATIGUE": "Fatigue", "ENERGY": "Energy now"}


def test_answers_object_gives_back_each_groups_answers_as_stored(study):
    """The FHIR file's aggregate, on the engine under test: each group's item -> value pairs come
    back, through a JSON parser, exactly as stored (quotes, backslashes, line breaks, accents,
    emoji, a bare '<'), one object per group and none shared between groups."""
    from sqlalchemy import literal, select, union_all

    from diary.exports.tables import answers_object

    stored = {
        1: {"fatigue": "63", "verbatim": 'said "tired"\\ then\nslept\ttwo hours', "mood": "cansado, sueño"},
        2: {"fatigue": "0", "verbatim": "😀 </script> \u2028 end", "headache.severe": ""},
    }
    rows = union_all(
        *(
            select(literal(group).label("grp"), literal(item).label("item"), literal(value).label("value"))
            for group, answers in stored.items()
            for item, value in answers.items()
        )
    ).subquery()
    query = select(rows.c.grp, answers_object(rows.c.item, rows.c.value)).group_by(rows.c.grp).order_by(rows.c.grp)
    got = {group: orjson.loads(text) for group, text in db.session.execute(query)}
    assert got == stored
