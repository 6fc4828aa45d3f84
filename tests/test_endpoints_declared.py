"""Endpoints declared in the protocol: the shipped protocol's exports are byte for byte those of
the code that had them written in Python (tests/golden/ketamine-demo, made from the demo study at
a fixed moment before the endpoints moved into the YAML)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from diary.demo import build_demo
from diary.exports import write_bundle
from diary.extensions import db

from .conftest import NOW

GOLDEN = Path(__file__).parent / "golden" / "ketamine-demo"


def _golden_sums() -> dict[str, str]:
    sums = {}
    for line in (GOLDEN / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name] = digest
    return sums


@pytest.fixture
def demo_bundle(study, tmp_path):
    build_demo(now=NOW)
    db.session.commit()
    out = tmp_path / "bundle"
    write_bundle(out, study=study, now=NOW, standards=True, true_allocation=True)
    return out


# Added since the golden copy, deliberately: the protocol version each entry was scheduled under
# (issue 31's amendments). The comparison takes it out again; nothing else may differ.
ADDED_COLUMN = "protocol_version"


def _without_added_column(name: str, data: bytes) -> bytes:
    if name == "assessments.csv":
        lines = data.decode().splitlines()
        cut = lines[0].split(",").index(ADDED_COLUMN)
        kept = []
        for line in lines:
            cells = line.split(",")
            assert len(cells) == len(lines[0].split(",")), "a cell with a comma: compare another way"
            kept.append(",".join(cells[:cut] + cells[cut + 1 :]) + "\n")
        return "".join(kept).encode()
    if name == "data_dictionary.csv":
        lines = data.decode().splitlines(keepends=True)
        return "".join(line for line in lines if not line.startswith(f"assessments,{ADDED_COLUMN},")).encode()
    return data


def test_the_shipped_protocols_exports_are_unchanged_byte_for_byte(demo_bundle):
    """Every file of the bundle (with SDTM, Define-XML, FHIR and the starter programs) hashes as
    before, less the protocol_version column added since; where a copy is kept, the first
    differing line is shown."""
    sums = _golden_sums()
    written = sorted(str(path.relative_to(demo_bundle)) for path in demo_bundle.rglob("*") if path.is_file())
    assert [name for name in written if name != "manifest.json"] == sorted(sums)
    header = (demo_bundle / "assessments.csv").read_text().splitlines()[0].split(",")
    versions = {
        row.split(",")[header.index(ADDED_COLUMN)]
        for row in (demo_bundle / "assessments.csv").read_text().splitlines()[1:]
    }
    assert versions == {"1.3"}  # the added column names the version
    for name, digest in sums.items():
        data = _without_added_column(name, (demo_bundle / name).read_bytes())
        kept = GOLDEN / name
        if kept.exists():
            for number, (old, new) in enumerate(zip(kept.read_text().splitlines(), data.decode().splitlines()), 1):
                assert old == new, f"{name} line {number} differs"
        assert hashlib.sha256(data).hexdigest() == digest, f"{name} differs from the golden copy"


# --- The declaration itself: parsed, refused with its path, computed as declared --------------

from diary.exports.endpoints import auc_timepoints, compute_endpoints, endpoint_columns  # noqa: E402
from diary.exports.schema import tables_for  # noqa: E402
from diary.protocol import ProtocolError, parse_protocol, shipped_protocol_path  # noqa: E402

SHIPPED_TEXT = shipped_protocol_path("ketamine-fatigue-crossover").read_text(encoding="utf-8")
SHIPPED_ENDPOINTS = SHIPPED_TEXT[SHIPPED_TEXT.index("endpoints:") :]


def with_endpoints(section: str):
    """The shipped protocol with another ``endpoints:`` section."""
    return SHIPPED_TEXT.replace(SHIPPED_ENDPOINTS, section)


OTHER_PLAN = """endpoints:
  table: energy
  measure: {item: energy_nrs.energy, name: nrs, label: Energy NRS}
  baseline: {mean_of: [D1, D2]}
  at: [D3, D7]
  changes: [pct_change, change]
  responders:
    - {change: change, at: D7, at_least: 2}
  auc: {change: change, to: 7d, min_points: 2}
  primary: {change: change, at: D7}
  split: period
"""


def test_the_shipped_protocol_declares_todays_endpoints():
    plan = parse_protocol(SHIPPED_TEXT).endpoints
    assert (plan.instrument, plan.item, plan.baseline, plan.at) == (
        "fatigue_vas",
        "fatigue",
        ("BL",),
        ("D1", "D3", "D7"),
    )
    assert plan.primary == "pct_change_d3" and plan.split == "period"
    assert [r.name for r in plan.responders] == ["responder_d3"] and plan.auc.name == "auc_pct_change_0_7d"
    assert plan.endpoints_table == "fatigue_endpoints" and plan.timecourse_table == "fatigue_timecourse"


def test_another_declaration_gives_its_own_columns_and_values():
    """A mean baseline, both changes, a responder by at_least, an area of the change that needs
    two points: each computed as declared, no code naming a time point."""
    protocol = parse_protocol(with_endpoints(OTHER_PLAN))
    plan = protocol.endpoints
    assert endpoint_columns(plan) == [
        "baseline_nrs",
        "nrs_d3",
        "nrs_d7",
        "change_d3",
        "change_d7",
        "pct_change_d3",
        "pct_change_d7",
        "responder_d7",
        "auc_change_0_7d",
        "hours_from_dose_d3",
        "hours_from_dose_d7",
        "auc_n_points",
    ]
    curve = auc_timepoints(protocol)
    assert curve[0] == "M40" and curve[-1] == "D7" and "D14" not in curve
    result = compute_endpoints(plan, {"D1": (24.0, 4), "D2": (48.0, 5), "D3": (72.0, 6), "D7": (168.0, 7)}, curve)
    assert result["baseline_nrs"] == 4.5  # the mean of D1 and D2
    assert (result["change_d3"], result["change_d7"]) == (1.5, 2.5)
    assert result["pct_change_d7"] == round(2.5 / 4.5 * 100, 2)
    assert result["responder_d7"] is True  # change_d7 >= 2
    # The curve: (0, 0), then D1 -0.5, D2 0.5, D3 1.5, D7 2.5 (hours 24, 48, 72, 168).
    expected = 24 * -0.5 / 2 + 24 * (-0.5 + 0.5) / 2 + 24 * (0.5 + 1.5) / 2 + 96 * (1.5 + 2.5) / 2
    assert result["auc_change_0_7d"] == round(expected, 1) and result["auc_n_points"] == 4
    one_point = compute_endpoints(plan, {"D1": (24.0, 4), "D7": (168.0, 5)}, ["D7"])  # D7 alone on the curve
    assert one_point["auc_change_0_7d"] is None and one_point["auc_n_points"] is None  # min_points 2
    assert one_point["responder_d7"] is False and one_point["change_d7"] == 1
    nothing = compute_endpoints(plan, {}, curve)
    assert nothing["baseline_nrs"] is None and nothing["responder_d7"] is None


def test_the_dictionary_and_file_names_follow_the_declaration():
    protocol = parse_protocol(with_endpoints(OTHER_PLAN))
    tables = tables_for(protocol)
    assert "energy_endpoints" in tables and "energy_timecourse" in tables and "fatigue_endpoints" not in tables
    columns = {column.name: column for column in tables["energy_endpoints"]}
    assert list(columns)[5:17] == endpoint_columns(protocol.endpoints)[:-1] + ["status_d7"]
    assert "change_d7 >= 2" in columns["responder_d7"].description
    assert "Mean energy NRS over D1, D2" in columns["baseline_nrs"].description
    assert columns["nrs_d7"].unit == "points (0-10)"
    assert [c.name for c in tables["energy_timecourse"]][7:11] == ["baseline_nrs", "nrs", "change", "pct_change"]
    participants = {c.name: c.description for c in tables["participants"]}
    assert "TRUE when change_d7 (the primary endpoint)" in participants["has_primary_both_periods"]


def test_a_study_with_another_declaration_exports_it(study, tmp_path, app):
    """The demo study exported under another declaration: the files carry its names and values,
    and the starter programs read its table and primary endpoint."""
    from diary.dosing.amendments import approve_amendment, propose_amendment

    from .staff_helpers import make_staff

    text = with_endpoints(OTHER_PLAN).replace('version: "1.3"', 'version: "1.3-energy"')
    build_demo(now=NOW)
    proposer, approver = make_staff("admin", "proposer@site.test"), make_staff("admin", "approver@site.test")
    amendment = propose_amendment(study, text, reason="new endpoints", actor="t", proposed_by=proposer, now=NOW)
    assert amendment.classification == "critical" and "critical: endpoints" in amendment.changes
    approve_amendment(amendment, approver=approver, actor="t", now=NOW)
    db.session.commit()
    out = tmp_path / "bundle"
    write_bundle(out, study=study, now=NOW, true_allocation=True)
    assert not (out / "fatigue_endpoints.csv").exists()
    header = (out / "energy_endpoints.csv").read_text().splitlines()[0].split(",")
    assert header[5:8] == ["baseline_nrs", "nrs_d3", "nrs_d7"] and "responder_d7" in header
    rows = (out / "energy_endpoints.csv").read_text().splitlines()[1:]
    assert rows and any(row.split(",")[header.index("change_d7")] not in ("",) for row in rows)
    program = (out / "analysis" / "primary.R").read_text()
    assert "energy_endpoints.csv" in program and "change_d7" in program and "pct_change_d3" not in program
    dictionary = (out / "data_dictionary.csv").read_text()
    assert "energy_endpoints,auc_change_0_7d" in dictionary


@pytest.mark.parametrize(
    "section, path, message",
    [
        ("  baseline: {timepoint: BL}", "endpoints.baseline.timepoint", "'XX' is not a time point"),
        ("  at: [D1, D3, D7]", "endpoints.at", "'XX' is not a time point"),
        ("  primary: {change: pct_change, at: D3}", "endpoints.primary.at", "must be one of endpoints.at"),
        ("  split: period", "endpoints.split", "must be one of period, arm"),
        ("  auc: {change: pct_change, to: 7d, requires: D7}", "endpoints.auc.requires", "'XX' is not a time point"),
    ],
)
def test_protocol_check_names_each_endpoint_problem_with_its_path(section, path, message):
    broken = SHIPPED_TEXT.replace(
        section,
        section.replace("BL", "XX")
        .replace("D7]", "XX]")
        .replace("at: D3", "at: XX")
        .replace("split: period", "split: sideways")
        .replace("requires: D7", "requires: XX"),
    )
    with pytest.raises(ProtocolError) as error:
        parse_protocol(broken)
    assert any(p == path and message in m for p, m in error.value.problems), error.value.problems


def test_every_endpoint_problem_is_named_at_once():
    broken = with_endpoints(
        """endpoints:
  table: "bad name"
  measure: {item: side_effects.symptoms}
  baseline: BL
  at: [D1]
  changes: [ratio]
  responders:
    - {change: pct_change, at: D1}
  auc: {change: pct_change, to: -1d, min_points: 0}
  primary: {change: pct_change, at: D9}
  split: sideways
"""
    )
    with pytest.raises(ProtocolError) as error:
        parse_protocol(broken)
    paths = {path for path, _ in error.value.problems}
    assert {
        "endpoints.table",
        "endpoints.measure.item",
        "endpoints.baseline",
        "endpoints.changes",
        "endpoints.responders[0]",
        "endpoints.auc.to",
        "endpoints.auc.min_points",
        "endpoints.primary.at",
        "endpoints.split",
    } <= paths
    assert any("is severity_checklist: endpoints need a vas or nrs item" in m for _, m in error.value.problems)
