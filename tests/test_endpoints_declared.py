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


def test_the_shipped_protocols_exports_are_unchanged_byte_for_byte(demo_bundle):
    """Every file of the bundle (with SDTM, Define-XML, FHIR and the starter programs) hashes as
    before; where a copy is kept, the first differing line is shown."""
    sums = _golden_sums()
    written = sorted(
        str(path.relative_to(demo_bundle)) for path in demo_bundle.rglob("*") if path.is_file()
    )
    assert [name for name in written if name != "manifest.json"] == sorted(sums)
    for name, digest in sums.items():
        data = (demo_bundle / name).read_bytes()
        kept = GOLDEN / name
        if kept.exists():
            for number, (old, new) in enumerate(zip(kept.read_text().splitlines(), data.decode().splitlines()), 1):
                assert old == new, f"{name} line {number} differs"
        assert hashlib.sha256(data).hexdigest() == digest, f"{name} differs from the golden copy"
