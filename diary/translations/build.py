"""Rebuild the catalogs: extract the participant-facing texts (babel.cfg) into messages.pot and
write es/LC_MESSAGES/messages.po from ``spanish.SPANISH``. Run by ``make translations``; the
.po files are committed, the compiled .mo files are built by ``make install`` (and at start)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def main() -> int:
    from diary.translations.spanish import SPANISH

    subprocess.run(
        [
            Path(sys.executable).parent / "pybabel",
            "extract",
            "-F",
            str(ROOT / "babel.cfg"),
            "-k",
            "_",
            "-k",
            "gettext",
            "-k",
            "ngettext:1,2",
            "--no-location",
            "--omit-header",
            "-o",
            str(HERE / "messages.pot"),
            str(ROOT),
        ],
        check=True,
        cwd=ROOT,
    )
    with open(HERE / "messages.pot", "rb") as handle:
        template = read_po(handle)
    catalog = Catalog(locale="es", project="diary", fuzzy=False)
    missing = []
    for message in template:
        if not message.id:
            continue
        translation = SPANISH.get(message.id)
        if translation is None:
            missing.append(message.id)
        catalog.add(message.id, translation, flags=() if translation else ("fuzzy",))
    target = HERE / "es" / "LC_MESSAGES" / "messages.po"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as handle:
        write_po(handle, catalog, omit_header=False, width=100)
    for text in missing:
        print(f"missing Spanish: {text!r}")
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
