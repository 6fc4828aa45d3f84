"""Check a site's archive with nothing but its own files: no database, no server.

Every file's SHA-256 against SHA256SUMS and the manifest, the whole against ``archive_sha256``,
files missing or added; then every exported endpoint recomputed from the raw tables
(assessments.csv and responses.csv) with the protocol file the archive carries, and compared
with the protocol's endpoints table (fatigue_endpoints.csv) cell by cell as the export writes it.

Runs as ``flask diary verify-archive DIR`` or, without the app's configuration, as
``python -m diary.archive.verify DIR``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..exports.bundle import sha256_of
from ..exports.endpoints import auc_timepoints, compute_endpoints, endpoint_columns
from ..exports.writers import cell_text
from ..protocol.loader import parse_protocol
from ..vocabulary import AssessmentState

SUMS = "SHA256SUMS"
MANIFEST = "manifest.json"


@dataclass
class Verification:
    files_checked: int = 0
    endpoint_rows: int = 0
    endpoint_cells: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_archive(folder: Path) -> Verification:
    folder = Path(folder)
    result = Verification()
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        sums_text = (folder / SUMS).read_text(encoding="utf-8")
    except (OSError, ValueError) as error:
        result.problems.append(f"{MANIFEST} or {SUMS} cannot be read: {error}")
        return result
    listed = manifest.get("files", {})
    sums = {}
    for line in sums_text.splitlines():
        digest, _, name = line.partition("  ")
        sums[name] = digest
    if hashlib.sha256(sums_text.encode()).hexdigest() != manifest.get("archive_sha256"):
        result.problems.append(f"{SUMS}: its SHA-256 is not the manifest's archive_sha256 (changed)")
    for name in sorted(set(listed) | set(sums)):
        expected = listed.get(name, {}).get("sha256")
        if sums.get(name) != expected:
            result.problems.append(f"{name}: {SUMS} and {MANIFEST} disagree")
        path = folder / name
        if not path.is_file():
            result.problems.append(f"{name}: missing")
            continue
        result.files_checked += 1
        if sha256_of(path) != expected:
            result.problems.append(f"{name}: SHA-256 differs from the manifest (changed or damaged)")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    for name in sorted(present - set(listed) - {MANIFEST, SUMS}):
        result.problems.append(f"{name}: not in the manifest (added)")
    try:
        _check_endpoints(folder, manifest, result)
    except (OSError, KeyError, ValueError) as error:
        result.problems.append(f"endpoints could not be recomputed: {error!r}")
    return result


def _rows(path: Path):
    with open(path, encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle)


def _moment(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def _check_endpoints(folder: Path, manifest: dict, result: Verification) -> None:
    protocol = parse_protocol((folder / manifest["protocol_file"]).read_text(encoding="utf-8"))
    plan = protocol.endpoints
    if plan is None:
        return  # the protocol declares no endpoints: there are none to recompute
    instrument, item = plan.instrument, plan.item
    codes = {tp.code for tp in protocol.timepoints}
    curve = auc_timepoints(protocol)
    table = f"{plan.endpoints_table}.csv"
    counted = {str(state) for state in AssessmentState.counted()}
    data = folder / "data"
    vas = {
        (row["participant_id"], row["period"], row["timepoint"]): row["value"]
        for row in _rows(data / "responses.csv")
        if row["instrument"] == instrument and row["item"] == item
    }
    by_period: dict[tuple[str, str], dict[str, tuple[float, int]]] = {}
    for row in _rows(data / "assessments.csv"):
        key = (row["participant_id"], row["period"])
        if not row["dose_start_utc"]:
            continue
        by_period.setdefault(key, {})
        value = vas.get((*key, row["timepoint"]))
        if value in (None, "") or row["status"] not in counted or row["timepoint"] not in codes:
            continue
        hours = (_moment(row["collected_utc"]) - _moment(row["dose_start_utc"])).total_seconds() / 3600
        by_period[key][row["timepoint"]] = (hours, int(value))
    exported = list(_rows(data / table))
    seen = set()
    for row in exported:
        key = (row["participant_id"], row["period"])
        seen.add(key)
        if key not in by_period:
            result.problems.append(f"{table} {key[0]} infusion {key[1]}: no dosed period in assessments.csv")
            continue
        recomputed = compute_endpoints(plan, by_period[key], curve)
        result.endpoint_rows += 1
        for column in endpoint_columns(plan):
            result.endpoint_cells += 1
            mine = cell_text(recomputed[column])
            if mine != row[column]:
                result.problems.append(
                    f"{table} {key[0]} infusion {key[1]} {column}: exported {row[column]!r}, recomputed {mine!r}"
                )
    for key in sorted(set(by_period) - seen):
        result.problems.append(f"assessments.csv {key[0]} infusion {key[1]}: dosed, but no row in {table}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m diary.archive.verify ARCHIVE-FOLDER", file=sys.stderr)
        return 2
    report = verify_archive(Path(argv[0]))
    print(summary(report))
    return 0 if report.ok else 1


def summary(report: Verification) -> str:
    lines = [
        f"{report.files_checked} files checked against their SHA-256; "
        f"{report.endpoint_rows} endpoint rows ({report.endpoint_cells} values) recomputed from the raw tables."
    ]
    lines += [f"PROBLEM {problem}" for problem in report.problems]
    lines.append(
        "Archive verified: every hash and every endpoint agree." if report.ok else f"{len(report.problems)} problems."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
