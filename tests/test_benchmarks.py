"""The benchmarks still run (at a tiny size): figures are measured there, not asserted here."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_export_benchmark_runs_and_agrees_with_its_baseline():
    """The benchmark checks that the export and the baseline wrote the same number of responses."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "export.py"), "--participants", "5", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ratio whole bundle / baseline" in result.stdout and "peak memory of the export" in result.stdout
    # Two baseline and export pairs, each ratio shown beside their median.
    assert re.search(r"median of 2 pairs \([\d.]+, [\d.]+\)", result.stdout), result.stdout


def test_reminder_benchmark_runs_and_delivers_every_message():
    """The benchmark itself checks that every due reminder reached the SMTP server exactly once."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "reminders.py"), "--reminders", "50"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ratio dispatch / bare loop" in result.stdout


def test_deployment_benchmark_runs_on_postgresql():
    """Two gunicorn servers and two schedulers on one PostgreSQL database, one of each killed
    mid-run: nothing lost or doubled, no 5xx, one reminder per reminder owed."""
    import os

    import pytest

    url = os.environ.get("DIARY_TEST_DATABASE_URL")
    if not url:
        pytest.skip("needs PostgreSQL: set DIARY_TEST_DATABASE_URL (.ci/run does when a server answers)")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "deployment.py"),
            "--participants",
            "6",
            "--silent",
            "4",
            "--database",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # Killed once about a third had submitted; in so small a run the threads may all be done by
    # then (how many depends on their timing), so the kill is checked, not its moment.
    assert re.search(r"killed app server 2 and scheduler 2 after [0-6] of 6 ", result.stdout), result.stdout
    assert (
        "RESULT deployment-postgresql stored=6 duplicates=0 losses=0 server_errors=0 reminders_per_owed=1.000"
        in result.stdout
    ), result.stdout


def test_dashboard_benchmark_runs_and_prints_its_results():
    """The dashboard benchmark builds a study, measures each page and ends with RESULT lines."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dashboard.py"), "--sizes", "5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for page in (
        "adherence",
        "adherence-sorted",
        "adherence-search",
        "audit",
        "summary",
        "side-effects",
        "follow-up",
        "adherence-live",
        "summary-live",
        "figures-refresh",
    ):
        assert f"RESULT {page}-5 ms=" in result.stdout
    assert "RESULT adherence-snapshot-5 ratio=" in result.stdout


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (.ci/run installs it)")
def test_web_benchmark_drives_both_sides_with_wrk_and_checks_the_database():
    """Tiny run of the web benchmark: same settings on both sides, every accepted submit stored
    once (the diary's and the floor's), no error, and the client far from saturated."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "web.py"),
            "--duration",
            "1",
            "--rounds",
            "1",
            "--clients",
            "1",
            "--engines",
            "sqlite",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    settings = re.search(r"sqlite settings, same on both sides: (.*)", result.stdout).group(1)
    assert "synchronous=1" in settings and "journal_mode=wal" in settings
    for side in ("submit", "floor"):  # the diary's submits, and the same work in the bare app (web_floor)
        found = re.search(rf"sqlite {side} c=1: (\d+) accepted, (\d+) stored, lost=0 duplicated=0", result.stdout)
        assert found, result.stdout
        accepted, stored = map(int, found.groups())
        assert accepted > 20 and stored >= accepted
    submit = re.search(
        r"RESULT submit-sqlite-c1 ratio=([\d.]+) .*floor=([\d.]+) diary_vs_floor=([\d.]+) "
        r"lost=0 duplicated=0 errors=0 client_busy=([\d.]+)",
        result.stdout,
    )
    assert submit, result.stdout
    assert 0 < float(submit.group(1)) and 0 < float(submit.group(2)) and 0 < float(submit.group(3))
    assert float(submit.group(4)) < 0.5
    assert re.search(r"RESULT today-sqlite-c1 ratio=[\d.]+ p99_ratio=[\d.]+ errors=0", result.stdout)


def test_the_web_benchmarks_settings_check_tells_a_bare_engine_from_the_diarys(tmp_path):
    """The flaw the old harness had (a bare SQLite engine committing with synchronous=FULL while
    the diary uses NORMAL) is what the benchmark's settings check finds."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from web import connection_settings
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from sqlalchemy import create_engine

    from diary.database import engine_options, tune_sqlite

    url = f"sqlite:///{tmp_path}/bare.sqlite"
    tuned, plain = create_engine(url, **engine_options(url, {})), create_engine(url)
    tune_sqlite(tuned)
    with tuned.connect() as connection:
        diary_like = connection_settings(connection)
    with plain.connect() as connection:
        untuned = connection_settings(connection)
    assert diary_like["synchronous"] == 1 and diary_like["busy_timeout"] == 30000
    assert diary_like["connection"] == "GatedConnection" and untuned["connection"] == "Connection"
    assert untuned["synchronous"] == 2 and untuned != diary_like


def test_scale_benchmark_measures_every_step_at_two_sizes():
    """Tiny run of the scale benchmark on a SQLite file: the study is built, each measurement
    runs in its own process, and the growth factors are printed."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "scale.py"),
            "--sizes",
            "20",
            "60",
            "--export-sizes",
            "20",
            "--database",
            "sqlite",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for size in (20, 60):
        for step in ("build", "first-pass", "steady-pass", "entries-pass", "figures", "page-adherence"):
            assert f"RESULT {step}-{size} " in result.stdout, (step, size)
    assert re.search(r"RESULT export-20 s=[\d.]+ mb=\d+", result.stdout)
    steady = re.search(
        r"steady-pass +[\d.]+ s +\d+ MB +queries=(\d+) longest_write_ms=(\d+) planned=\d+ tasks=\d+", result.stdout
    )
    assert steady, result.stdout
    assert int(steady.group(1)) < 100 and int(steady.group(2)) < 1000
    assert "RESULT growth steady-pass x=" in result.stdout
