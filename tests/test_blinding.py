"""Blinding that survives a statistician: no blinded role can recover the allocation.

The recovery test plays the statistician. For a seeded study of ten participants it collects
everything one blinded role can read (every GET page it may open, the web and command-line
exports in every format with the exchange formats, the calendar feeds, the emails sent), then
searches all 2^n sequence assignments for those consistent with it: every aggregate row that
names a group of the allocation (a mean per sequence or per treatment, with its n) and every row
that pairs a participant with a sequence must agree with the assignment. The statistician knows
every participant's own values (the blinded export carries them); material flagged as dummy
allocation says nothing about the true one and is read as such. A planted leak (the old summary,
split by the true sequence) must single out the true assignment: the test can fail.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from diary.demo import build_demo
from diary.errors import Refused
from diary.extensions import db
from diary.models import Participant, now_utc
from diary.participants.enrolment import reissue_link
from diary.participants.links import signed_link_token
from diary.reminders.dispatch import run_pass
from diary.study.blinding import Blinding, blinding_for
from diary.study.trial import protocol_of, unblind
from diary.vocabulary import Allocation, Role, Split

from .conftest import ready_for_the_truth
from .participant_helpers import csrf_from, sign_in
from .staff_helpers import login_as, make_staff
from .test_reminders import smtp, text_of  # noqa: F401  (smtp: a real aiosmtpd server)

BLINDED_STAFF = ("coordinator", "investigator", "analyst", "admin", "emergency")
SEQUENCE_WORD = re.compile(r"(?<![\w-])(AB|BA)(?![\w-])")


# --- What a reader can read --------------------------------------------------------------------


@dataclass
class Document:
    """One thing a reader can read: its visible text and its tables (header, rows)."""

    name: str
    text: str = ""
    tables: list = field(default_factory=list)
    # Flagged as carrying the dummy allocation (the export's manifest says so).
    dummy: bool = False


class _Page(HTMLParser):
    """Visible text and tables of an HTML page (scripts and styles are not read by people)."""

    def __init__(self):
        super().__init__()
        self.text, self.tables, self._skip = [], [], 0
        self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "table":
            self.tables.append(([], []))
        elif tag == "tr" and self.tables:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self.tables:
            header, rows = self.tables[-1]
            if not header and not rows:
                header.extend(self._row)
            else:
                rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._skip:
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def html_document(name: str, html: str) -> Document:
    page = _Page()
    page.feed(html)
    return Document(name, " ".join(" ".join(page.text).split()), page.tables)


def _table_document(name: str, header: list[str], rows: list[list[str]], dummy: bool) -> Document:
    return Document(name, "\n".join(" ".join(row) for row in rows), [(header, rows)], dummy)


def bundle_documents(name: str, files: dict[str, bytes]) -> list[Document]:
    """Every file of an export bundle as the statistician reads it, with its dummy flag."""
    import pyarrow.parquet as pq
    from openpyxl import load_workbook

    manifest = json.loads(files["manifest.json"])
    dummy = bool(manifest["allocation_is_dummy"])
    documents = [Document(f"{name}/manifest.json", files["manifest.json"].decode(), dummy=dummy)]
    for path, content in sorted(files.items()):
        where = f"{name}/{path}"
        if path.endswith(".csv"):
            rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
            documents.append(_table_document(where, rows[0] if rows else [], rows[1:], dummy))
        elif path.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(content))
            rows = [["" if v is None else str(v) for v in row.values()] for row in table.to_pylist()]
            documents.append(_table_document(where, table.column_names, rows, dummy))
        elif path.endswith(".xlsx"):
            sheet = load_workbook(io.BytesIO(content), read_only=True).active
            rows = [["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)]
            documents.append(_table_document(where, rows[0] if rows else [], rows[1:], dummy))
        elif path.endswith(".json") and path != "manifest.json":
            data = json.loads(content)
            header = [column["name"] for column in data.get("columns", [])]
            rows = [["" if v is None else str(v) for v in row] for row in data.get("rows", [])]
            documents.append(_table_document(where, header, rows, dummy))
        elif path.endswith((".ndjson", ".py", ".R")):
            documents.append(Document(where, content.decode("utf-8"), dummy=dummy))
    return documents


def _fill(rule, values: dict) -> list[str]:
    """Every URL of a rule with the sample values of its arguments."""
    names = sorted(rule.arguments)
    urls = []
    for combination in itertools.product(*(values[name] for name in names)):
        url = rule.rule
        for name, value in zip(names, combination):
            url = re.sub(rf"<(?:\w+:)?{name}>", str(value), url)
        urls.append(url)
    return urls


def staff_pages(app, client) -> list[Document]:
    """Every staff GET page the signed-in person may open, for every participant."""
    participants = db.session.scalars(select(Participant).order_by(Participant.code)).all()
    assessments = [a for p in participants for period in p.periods for a in period.assessments]
    with_entry = [a.id for a in assessments if a.submission is not None][:6]
    without_entry = [a.id for a in assessments if a.submission is None][:6]
    values = {
        "code": [p.code for p in participants],
        "number": [1, 2],
        "assessment_id": with_entry + without_entry,
        "user_id": [1],
        "task_id": [1],
        "report_id": [1],
        "archive_id": [1],
    }
    documents = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or not rule.rule.startswith("/staff") or rule.endpoint == "signin.logout":
            continue
        urls = _fill(rule, values)
        if rule.rule == "/staff/":
            urls += ["/staff/?sort=compliance", "/staff/?attention=1", "/staff/?page=2"]
        if rule.rule == "/staff/audit":
            urls += [f"/staff/audit?participant={p.code}" for p in participants]
        for url in urls:
            response = client.get(url)
            if response.status_code == 200 and response.mimetype == "text/html":
                documents.append(html_document(url, response.get_data(as_text=True)))
    return documents


def web_exports(client) -> list[Document]:
    """The download page's ZIP in every format, with the exchange formats."""
    documents = []
    page = client.get("/staff/exports")
    if page.status_code != 200:
        return documents
    for fmt in ("csv", "parquet", "xlsx"):
        response = client.post(
            "/staff/exports",
            data={"csrf_token": csrf_from(page.get_data(as_text=True)), "format": fmt, "standards": "yes"},
        )
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        archive = zipfile.ZipFile(io.BytesIO(response.get_data()))
        documents += bundle_documents(f"web-{fmt}", {n: archive.read(n) for n in archive.namelist()})
    return documents


def pdf_document(name: str, content: bytes) -> Document:
    from pypdf import PdfReader

    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)
    return Document(name, " ".join(text.split()))


def web_archives(client) -> list[Document]:
    """The site's archive as its coordinator (or investigator) builds and downloads it: every
    table, Dataset-JSON and paper-diary PDF in the zip."""
    page = client.get("/staff/archive")
    if page.status_code != 200:
        return []
    html = page.get_data(as_text=True)
    built = client.post("/staff/archive", data={"csrf_token": csrf_from(html), "site": "NIH-CC"})
    assert built.status_code == 302, built.get_data(as_text=True)[:300]
    link = re.search(r'href="(/staff/archive/\d+/download)"', client.get("/staff/archive").get_data(as_text=True))
    packed = zipfile.ZipFile(io.BytesIO(client.get(link.group(1)).get_data()))
    files = {name.split("/", 1)[1]: packed.read(name) for name in packed.namelist()}
    data = {name[len("data/") :]: content for name, content in files.items() if name.startswith("data/")}
    documents = bundle_documents("archive/data", data)
    documents += [pdf_document(f"archive/{name}", content) for name, content in files.items() if name.endswith(".pdf")]
    documents += [
        Document(f"archive/{name}", content.decode("utf-8"))
        for name, content in files.items()
        if name.endswith((".txt", ".yaml")) or name.startswith("staff/")
    ]
    return documents


def cli_exports(runner, tmp_path) -> list[Document]:
    """The command line's export as the operator runs it by default, in every format."""
    documents = []
    for fmt in ("csv", "parquet", "xlsx"):
        out = tmp_path / f"cli-{fmt}"
        result = runner.invoke(args=["diary", "export", "--out", str(out), "--format", fmt, "--standards"])
        assert result.exit_code == 0, result.output
        documents += bundle_documents(
            f"cli-{fmt}", {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        )
    return documents


def participant_pages(app) -> list[Document]:
    """Each participant's own pages: Today, history, settings, every entry form, the calendar."""
    documents = []
    for participant in db.session.scalars(select(Participant).order_by(Participant.code)).all():
        token = reissue_link(participant, actor="test", now=now_utc())
        participant.calendar_feed = True
        db.session.commit()
        phone = app.test_client()
        sign_in(phone, token)
        ids = [a.id for period in participant.periods for a in period.assessments]
        for url in ["/p/today", "/p/history", "/p/settings"] + [f"/p/entry/{i}" for i in ids]:
            response = phone.get(url)
            if response.status_code == 200:
                documents.append(html_document(f"{participant.code}{url}", response.get_data(as_text=True)))
        own = phone.get("/p/history/my-answers.csv")
        assert own.status_code == 200
        documents.append(Document(f"{participant.code}/my-answers.csv", own.get_data(as_text=True)))
        documents.append(
            pdf_document(f"{participant.code}/my-answers.pdf", phone.get("/p/history/my-answers.pdf").get_data())
        )
        feed = phone.get(f"/p/calendar/{signed_link_token(participant, 'calendar')}.ics")
        assert feed.status_code == 200
        documents.append(Document(f"{participant.code}/calendar.ics", feed.get_data(as_text=True)))
    return documents


def emails(smtp) -> list[Document]:  # noqa: F811
    return [Document(f"email to {m['To']}", f"{m['Subject']}\n{text_of(m)}") for m in smtp.inbox.messages]


# --- The statistician --------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupRow:
    """A shown aggregate: the mean % change of a group of the allocation, with its n."""

    kind: str  # "sequence" or "treatment"
    group: str
    period: int
    timepoint: str
    n: int
    mean: float


def _column(header: list[str], *names: str) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def group_rows(documents: list[Document], protocol) -> list[GroupRow]:
    """Aggregate rows that name a true group of the allocation (not pooled, not dummy)."""
    drugs = {name.lower(): code for code, name in protocol.treatments.items()}
    found = []
    for document in documents:
        if document.dummy:
            continue
        for header, rows in document.tables:
            period_at = _column(header, "infusion", "period")
            timepoint_at = _column(header, "time point", "timepoint")
            n_at, mean_at = _column(header, "n"), _column(header, "mean % change", "mean")
            if None in (period_at, timepoint_at, n_at, mean_at):
                continue
            for row in rows:
                if len(row) <= max(period_at, timepoint_at, n_at, mean_at):
                    continue
                label = row[0].strip()
                if label.lower().startswith("dummy"):
                    continue
                match = re.fullmatch(r"sequence (\w+)", label)
                if match:
                    kind, group = "sequence", match.group(1)
                elif re.fullmatch(r"treatment (\w+)", label):
                    kind, group = "treatment", label.split()[1]
                elif label.lower() in drugs:
                    kind, group = "treatment", drugs[label.lower()]
                else:
                    continue  # pooled, or not a group
                try:
                    found.append(
                        GroupRow(
                            kind,
                            group,
                            int(row[period_at]),
                            row[timepoint_at].split()[0],
                            int(row[n_at]),
                            float(row[mean_at]),
                        )
                    )
                except ValueError:
                    continue  # a withheld small cell
    return found


def participant_sequences(documents: list[Document], codes: list[str]) -> set[tuple[str, str]]:
    """(participant, sequence) pairs a reader finds stated together outside dummy material: a table
    row or a line of text naming one participant and one sequence."""
    pairs = set()
    for document in documents:
        if document.dummy:
            continue
        lines = [" ".join(row) for _, rows in document.tables for row in rows] + document.text.splitlines()
        for line in lines:
            named = [code for code in codes if code in line]
            sequences = set(SEQUENCE_WORD.findall(line))
            if len(named) == 1 and len(sequences) == 1 and "dummy" not in line.lower():
                pairs.add((named[0], sequences.pop()))
    return pairs


def consistent_assignments(documents, values, codes, protocol) -> list[tuple[str, ...]]:
    """Every assignment of sequences to ``codes`` that agrees with all a reader can read.

    ``values``: {(code, period, time point): % change from baseline}, each participant's own
    figures as the blinded export carries them.
    """
    rows = group_rows(documents, protocol)
    pairs = participant_sequences(documents, codes)
    sequences = sorted(protocol.sequences)
    consistent = []
    for assignment in itertools.product(sequences, repeat=len(codes)):
        given = dict(zip(codes, assignment))
        if any(given[code] != sequence for code, sequence in pairs):
            continue
        if all(_agrees(row, given, values, protocol) for row in rows):
            consistent.append(assignment)
    return consistent


def _agrees(row: GroupRow, given: dict, values: dict, protocol) -> bool:
    if row.kind == "sequence":
        members = [code for code, sequence in given.items() if sequence == row.group]
    else:
        members = [
            code for code, sequence in given.items() if protocol.sequences[sequence][row.period - 1] == row.group
        ]
    found = [
        values[(code, row.period, row.timepoint)] for code in members if (code, row.period, row.timepoint) in values
    ]
    # The export carries % changes to two decimals; the page rounds its means to one.
    return len(found) == row.n and abs(sum(found) / len(found) - row.mean) <= 0.06


def own_values(documents: list[Document]) -> dict:
    """Each participant's % change per period and time point, from a blinded export's timecourse,
    as the summary counts them (entries judged inside their windows)."""
    table = next(d for d in documents if d.name.endswith("/fatigue_timecourse.csv"))
    header, rows = table.tables[0]
    at = {name: header.index(name) for name in ("participant_id", "period", "timepoint", "pct_change", "status")}
    return {
        (row[at["participant_id"]], int(row[at["period"]]), row[at["timepoint"]]): float(row[at["pct_change"]])
        for row in rows
        if row[at["pct_change"]]
        and row[at["timepoint"]] != "BL"
        and row[at["status"]] in ("completed", "completed_late")
    }


# --- The tests ---------------------------------------------------------------------------------


@pytest.fixture
def trial(app, study, smtp, runner, tmp_path):  # noqa: F811
    """The seeded demo study (ten participants, 4 AB and 6 BA), its reminders and alerts sent to a
    real SMTP server, and what every reader can read of it."""
    now = now_utc()
    build_demo(now=now)
    db.session.commit()
    run_pass(app, now=now)
    participants = db.session.scalars(select(Participant).order_by(Participant.code)).all()
    codes = [p.code for p in participants]
    truth = tuple(p.sequence for p in participants)
    shared = cli_exports(runner, tmp_path) + emails(smtp)
    values = own_values(shared)
    return {
        "codes": codes,
        "truth": truth,
        "shared": shared,
        "values": values,
        "protocol": protocol_of(study.current_protocol_version),
    }


def _read_as(app, role: str, trial) -> list[Document]:
    client = app.test_client()
    login_as(client, role, f"{role}-reader@site.test")
    return staff_pages(app, client) + web_exports(client) + web_archives(client) + trial["shared"]


def test_no_blinded_role_can_recover_the_allocation(app, trial):
    """Coordinator, analyst, admin, emergency (before a break) and participants: more than one
    assignment fits all each can read, and the true one is among them (never singled out)."""
    codes, truth, protocol = trial["codes"], trial["truth"], trial["protocol"]
    assert len(codes) == 10 and sorted(truth).count("AB") == 4
    readers = {role: _read_as(app, role, trial) for role in BLINDED_STAFF}
    readers["participant"] = participant_pages(app) + trial["shared"]
    for reader, documents in readers.items():
        assert len(documents) > 20, (reader, len(documents))
        consistent = consistent_assignments(documents, trial["values"], codes, protocol)
        assert truth in consistent, reader
        assert len(consistent) > 1, f"{reader} can recover the allocation"
    # The statistician did read the analyst's summary: dummy-split rows, none naming a true group.
    summary = next(d for d in readers["analyst"] if d.name == "/staff/summary")
    assert "dummy sequence AB" in summary.text and "dummy allocation" in summary.text
    assert group_rows([summary], protocol) == []


def test_a_planted_leak_singles_out_the_true_allocation(app, trial, monkeypatch):
    """Negative control: the old summary (by true sequence, every cell shown) leaks, and the
    recovery finds the one true assignment from the analyst's view."""
    from diary.web import analysis

    monkeypatch.setattr(
        analysis, "blinding_for", lambda study, role, **kw: Blinding(role, Allocation.TRUE, drug_names=False)
    )
    documents = _read_as(app, "analyst", trial)
    consistent = consistent_assignments(documents, trial["values"], trial["codes"], trial["protocol"])
    assert consistent == [trial["truth"]]


def test_a_leaked_participant_sequence_is_found(trial):
    """The recovery reads rows pairing a participant with a sequence (outside dummy material)."""
    codes, truth = trial["codes"], trial["truth"]
    leak = Document("planted", "\n".join(f"{code} sequence {sequence}" for code, sequence in zip(codes, truth)))
    assert consistent_assignments([leak], trial["values"], codes, trial["protocol"]) == [truth]
    flagged = Document("planted", leak.text, dummy=True)
    assert len(consistent_assignments([flagged], trial["values"], codes, trial["protocol"])) == 2 ** len(codes)


def _sealed_names_in(documents: list[Document], protocol) -> list[str]:
    """Documents that show a sealed drug name (what unblinding reveals; the blinding guess's own
    choices name the medicines without their doses, as the consent form does)."""
    names = [name.lower() for name in protocol.treatments.values()]
    return [d.name for d in documents if any(name in d.text.lower() for name in names)]


def test_no_blinded_role_sees_a_drug_or_a_true_sequence_and_the_unblinded_role_does(app, trial):
    """Route x role: before unblinding no blinded page shows a sealed drug name or pairs a
    participant with a sequence; the unblinded role sees the true sequences; after unblinding
    every staff role sees the drug names."""
    codes, truth, protocol = trial["codes"], trial["truth"], trial["protocol"]
    for role in BLINDED_STAFF:
        client = app.test_client()
        login_as(client, role, f"{role}-route@site.test")
        pages = staff_pages(app, client)
        assert pages and _sealed_names_in(pages, protocol) == [], role
        assert participant_sequences(pages, codes) == set(), role
    phones = participant_pages(app)
    assert _sealed_names_in(phones, protocol) == []
    assert not [d.name for d in phones if SEQUENCE_WORD.search(d.text)]

    keyholder = app.test_client()
    login_as(keyholder, "unblinded", "keyholder-route@site.test")
    pages = staff_pages(app, keyholder)
    assert participant_sequences(pages, codes) == set(zip(codes, truth))
    summary = keyholder.get("/staff/summary").get_data(as_text=True)
    assert "sequence AB" in summary and "dummy" not in summary and _sealed_names_in(pages, protocol) == []

    ready_for_the_truth(db.session.merge(trial_study()))
    unblind(db.session.merge(trial_study()), user=make_staff("unblinded", "keyholder-route@site.test"), now=now_utc())
    db.session.commit()
    for role in ("unblinded", "coordinator", "analyst"):
        client = app.test_client()
        login_as(client, role, f"{role}-after@site.test")
        summary = html_document("summary", client.get("/staff/summary").get_data(as_text=True))
        assert _sealed_names_in([summary], protocol) == ["summary"], role


def trial_study():
    from diary.study.trial import require_study

    return require_study()


# --- The guard, where it lives -----------------------------------------------------------------


@dataclass
class _Study:
    unblinded_at: object = None


@pytest.mark.parametrize(
    "reader, allocation, split",
    [
        (Role.UNBLINDED, Allocation.TRUE, Split.SEQUENCE),
        (Role.ANALYST, Allocation.DUMMY, Split.DUMMY_SEQUENCE),
        (Role.ADMIN, Allocation.DUMMY, Split.DUMMY_SEQUENCE),
        (Role.COORDINATOR, Allocation.NONE, Split.POOLED),
        (Role.EMERGENCY, Allocation.NONE, Split.POOLED),
        ("participant", Allocation.NONE, Split.POOLED),
        ("operator", Allocation.DUMMY, Split.DUMMY_SEQUENCE),
    ],
)
def test_the_guard_before_unblinding(reader, allocation, split):
    """Blinded study: the truth (masked) for the unblinded role, a dummy for programmers, else none."""
    blinding = blinding_for(_Study(), reader)
    assert (blinding.allocation, blinding.split, blinding.drug_names) == (allocation, split, False)
    assert blinding.min_cell == (1 if allocation is Allocation.TRUE else 3)
    assert blinding.shows_cell(3) and blinding.shows_cell(2) == (allocation is Allocation.TRUE)
    assert (blinding.hidden_audit_actions == ()) == (allocation is Allocation.TRUE)


@pytest.mark.parametrize("reader", [Role.COORDINATOR, Role.ANALYST, Role.ADMIN, Role.EMERGENCY, Role.UNBLINDED])
def test_the_guard_after_unblinding_shows_every_staff_role_the_drugs(reader):
    blinding = blinding_for(_Study(unblinded_at=now_utc()), reader)
    assert (blinding.allocation, blinding.split, blinding.drug_names) == (Allocation.TRUE, Split.TREATMENT, True)


def test_the_guard_never_shows_a_participant_an_allocation():
    assert blinding_for(_Study(unblinded_at=now_utc()), "participant").allocation is Allocation.NONE


@pytest.mark.parametrize("reader", [Role.ANALYST, Role.ADMIN, Role.COORDINATOR, Role.EMERGENCY])
def test_the_guard_refuses_the_true_allocation_to_a_blinded_role(reader):
    with pytest.raises(Refused) as refused:
        blinding_for(_Study(), reader, true_allocation=True)
    assert refused.value.status == 403


def test_the_guard_gives_the_operator_the_truth_only_when_asked():
    assert blinding_for(_Study(), "operator", true_allocation=True).allocation is Allocation.TRUE


def test_a_coordinator_gets_no_export_at_all(study, tmp_path):
    """The export asks the guard: a reader with no allocation gets no bundle (403)."""
    from diary.exports import export_study

    with pytest.raises(Refused) as refused:
        export_study(tmp_path, study=study, now=now_utc(), actor="t", role=Role.COORDINATOR)
    assert refused.value.status == 403 and not (tmp_path / "manifest.json").exists()


def test_small_cells_are_withheld_from_blinded_readers(study):
    """A dummy-split cell of one or two participants shows no n, mean or SD."""
    from diary.reporting.summary import vas_change_summary

    protocol = protocol_of(study.current_protocol_version)
    sums = [
        ("AB", "BA", "A", 1, "D3", 2, -40.0, 820.0),
        ("BA", "AB", "B", 1, "D3", 1, -10.0, 100.0),
        ("BA", "BA", "B", 1, "D3", 3, -30.0, 320.0),
    ]
    rows = {
        row.group: row
        for row in vas_change_summary(study, protocol, Split.DUMMY_SEQUENCE, now_utc(), sums=sums, min_cell=3)
    }
    assert (
        rows["dummy sequence BA"].shown and rows["dummy sequence BA"].n == 5 and rows["dummy sequence BA"].mean == -14.0
    )
    assert not rows["dummy sequence AB"].shown and rows["dummy sequence AB"].mean is None
    truth = {row.group: row for row in vas_change_summary(study, protocol, Split.SEQUENCE, now_utc(), sums=sums)}
    assert truth["sequence AB"].shown and truth["sequence AB"].mean == -20.0


# --- Functional unblinding, said honestly -------------------------------------------------------


def test_blinding_indices_match_the_published_example():
    """James and Bang on the R package BI's example table (48 22 / 4 30 / 330 319)."""
    from diary.study.blinding_index import bang, james

    counts = [[48, 22], [4, 30], [330, 319]]
    overall = james(counts)
    assert (round(overall.estimate, 3), round(overall.se, 3)) == (0.896, 0.011)
    assert [round(v, 3) for v in overall.ci] == [0.875, 0.918]
    assert [(round(bang(counts, arm).estimate, 3), round(bang(counts, arm).se, 3)) for arm in (0, 1)] == [
        (0.115, 0.018),
        (0.022, 0.019),
    ]
    assert james([[0, 0], [0, 0], [5, 5]]).estimate == 1.0  # everyone said "don't know"
    assert james([[0, 0], [0, 0], [0, 0]]) is None and bang([[0, 0], [0, 0], [0, 0]], 0) is None
    assert bang([[5, 0], [0, 5], [0, 0]], 0).estimate == 1.0  # every guess right


def test_the_blinding_index_is_shown_to_unblinded_readers_only(app, trial):
    """The guesses against the treatment given: the unblinded role's summary has them, per
    period; a blinded analyst's does not."""
    from diary.reporting.summary import blinding_guess_summary

    guesses = blinding_guess_summary(trial_study(), trial["protocol"])
    assert guesses and sum(sum(row) for row in guesses[0].counts) > 0
    analyst, keyholder = app.test_client(), app.test_client()
    login_as(analyst, "analyst", "analyst-bi@site.test")
    login_as(keyholder, "unblinded", "keyholder-bi@site.test")
    assert "James" not in analyst.get("/staff/summary").get_data(as_text=True)
    page = keyholder.get("/staff/summary").get_data(as_text=True)
    assert "James's index, infusion 1" in page and "Given treatment A" in page


def test_an_export_without_side_effects_leaves_out_what_can_reveal_the_drug(app, trial, runner, tmp_path):
    """--without-side-effects: no side-effect report, no blinding guess, in any table or format."""
    plain, bare = tmp_path / "plain", tmp_path / "bare"
    assert runner.invoke(args=["diary", "export", "--out", str(plain), "--standards"]).exit_code == 0
    result = runner.invoke(args=["diary", "export", "--out", str(bare), "--standards", "--without-side-effects"])
    assert result.exit_code == 0 and "side effects and blinding guesses withheld" in result.output

    def read(folder, name):
        return list(csv.DictReader(io.StringIO((folder / name).read_text(encoding="utf-8"))))

    assert read(plain, "side_effects.csv") and read(bare, "side_effects.csv") == []
    assert read(plain, "sdtm/ae.csv") and read(bare, "sdtm/ae.csv") == []
    assert any(r["instrument"] == "blinding_guess" for r in read(plain, "responses.csv"))
    assert not any(r["instrument"] == "blinding_guess" for r in read(bare, "responses.csv"))
    assert read(bare, "responses.csv")  # the fatigue ratings are all there
    fhir = (bare / "fhir" / "QuestionnaireResponse.ndjson").read_text()
    assert "blinding_guess" not in fhir and "symptoms" not in fhir and "fatigue" in fhir
    trail = read(bare, "audit_trail.csv")
    assert trail and not any(r["entity"] == "side_effect_report" for r in trail)
    assert not any(
        "side_effects." in (r["new_value"] + r["old_value"]) or "blinding_guess." in r["new_value"] for r in trail
    )
    manifest = json.loads((bare / "manifest.json").read_text())
    assert manifest["side_effects"].startswith("withheld")


# --- The emergency role like the unblinded one ---------------------------------------------------


def _password_login(client, email: str, password: str):
    page = client.get("/staff/login").get_data(as_text=True)
    return client.post("/staff/login", data={"email": email, "password": password, "csrf_token": csrf_from(page)})


def test_an_emergency_account_made_by_the_admin_changes_its_password_then_sets_up_a_second_factor(app, client, study):
    """Created on the admin's page: its own password first, then TOTP, before any code-break page."""
    login_as(client, "admin")
    page = client.get("/staff/admin/users").get_data(as_text=True)
    assert (
        client.post(
            "/staff/admin/users",
            data={
                "csrf_token": csrf_from(page),
                "email": "er.new@example.org",
                "role": "emergency",
                "password": "temporary pass 2024!",
            },
        ).status_code
        == 302
    )
    fresh = app.test_client()
    _password_login(fresh, "er.new@example.org", "temporary pass 2024!")
    assert fresh.get("/staff/code-break").headers["Location"].endswith("/staff/password")
    form = fresh.get("/staff/password").get_data(as_text=True)
    changed = fresh.post(
        "/staff/password",
        data={
            "current": "temporary pass 2024!",
            "new": "my own long phrase 7",
            "confirm": "my own long phrase 7",
            "csrf_token": csrf_from(form),
        },
    )
    assert changed.status_code in (302, 303), changed.get_data(as_text=True)[:400]
    _password_login(fresh, "er.new@example.org", "my own long phrase 7")
    assert fresh.get("/staff/code-break").headers["Location"].endswith("/staff/second-factor")


def test_an_emergency_sign_in_asks_for_the_authenticator_code(app, study):
    """With TOTP on, the password alone opens nothing; the code does."""
    from .staff_helpers import PASSWORD, totp_now

    make_staff("emergency", "er.code@site.test")
    client = app.test_client()
    step = _password_login(client, "er.code@site.test", PASSWORD)
    assert step.headers["Location"].endswith("/staff/login/code")
    assert client.get("/staff/code-break").status_code == 302
    form = client.get("/staff/login/code").get_data(as_text=True)
    assert client.post("/staff/login/code", data={"code": totp_now(), "csrf_token": csrf_from(form)}).status_code == 302
    assert client.get("/staff/code-break").status_code == 200


def test_the_second_factor_rule_names_the_emergency_role():
    from diary.governance.staff import second_factor_required
    from diary.models import StaffUser

    assert second_factor_required(StaffUser(role=Role.EMERGENCY), False)
    assert not second_factor_required(StaffUser(role=Role.COORDINATOR), False)


@pytest.mark.parametrize("role", [Role.COORDINATOR, Role.ANALYST, Role.ADMIN])
def test_break_code_refuses_a_role_that_may_not_break(study, role):
    """The rule itself, not only its page: a blinded role breaks nothing and nothing is written."""
    from diary.models import AuditEvent
    from diary.participants.enrolment import enroll
    from diary.safety.alerts import break_code

    participant, _ = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now_utc(), code="P-NOBRK"
    )
    with pytest.raises(Refused) as refused:
        break_code(participant, "a long enough reason for the break", by=make_staff(role), now=now_utc())
    assert refused.value.status == 403 and participant.code_broken_at is None
    assert not db.session.scalars(select(AuditEvent).where(AuditEvent.action == "break_code")).all()


def test_break_code_needs_a_reason(study):
    from diary.participants.enrolment import enroll
    from diary.safety.alerts import break_code

    participant, _ = enroll(study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now_utc(), code="P-WHY")
    with pytest.raises(Refused) as refused:
        break_code(participant, "urgent", by=make_staff("emergency"), now=now_utc())
    assert refused.value.field == "reason" and participant.code_broken_at is None
