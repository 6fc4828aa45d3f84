"""Mutation testing of the rule packages: does a test fail when a rule is broken?

Run with ``make mutation`` (not part of ``make test`` or CI: it runs the chosen tests once per
mutant, a few minutes on two cores). For each rule module it makes small changes one at a time:

- a refusal deleted (a ``raise`` inside an ``if`` becomes ``pass``);
- a condition negated (``if x:`` becomes ``if not x:``);
- a comparison turned (``<`` and ``<=``, ``>`` and ``>=``, ``==`` and ``!=``, ``in`` and ``not in``,
  ``is`` and ``is not``);
- ``and`` and ``or`` swapped;
- a returned refusal message (a string or a ``_()`` call) replaced by ``None``;

and runs that package's tests (SQLite only, stopping at the first failure). A mutant is killed
when a test fails; the survivors are printed with their line, for a person to read: some are
equivalent (``<`` and ``<=`` between two times that can never be equal), the rest are missing
tests. Each worker mutates its own copy of the repository, so the working tree is never touched.

    python tests/mutation.py [package ...]     # dosing safety entries endpoints schedule
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The rule modules of each package, and the tests that speak for them (fast ones: the direct
# rule tests, the schedule's and the rules' pinned edges).
PACKAGES = {
    "dosing": (
        ["diary/dosing/infusions.py", "diary/dosing/assessments.py"],
        [
            "tests/test_rules_direct.py",
            "tests/test_rules_once.py",
            "tests/test_schedule.py",
            "tests/test_rules_pinned.py",
            "tests/test_time_truth.py",
        ],
    ),
    "safety": (
        ["diary/safety/alerts.py", "diary/safety/follow_up.py", "diary/safety/side_effects.py"],
        ["tests/test_rules_direct.py", "tests/test_safety.py"],
    ),
    "entries": (
        ["diary/entries/recording.py", "diary/entries/corrections.py", "diary/entries/change_requests.py"],
        [
            "tests/test_rules_direct.py",
            "tests/test_rules_pinned.py",
            "tests/test_rules_once.py",
            "tests/test_governance.py",
        ],
    ),
    "endpoints": (["diary/exports/endpoints.py"], ["tests/test_rules_direct.py", "tests/test_rules_pinned.py"]),
    "schedule": (
        ["diary/protocol/schedule.py"],
        ["tests/test_schedule.py", "tests/test_rules_pinned.py", "tests/test_time_truth.py"],
    ),
}
COPIED = ["diary", "tests", "templates", "static", "pyproject.toml", "babel.cfg", "wsgi.py"]
TURNS = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}


@dataclass
class Mutant:
    path: str
    index: int  # the n-th mutation site of the file, in ast.walk order
    line: int
    what: str


def _in_functions(tree: ast.Module):
    """Nodes inside function bodies (module-level constants and docstrings are not rules)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for statement in node.body:
                yield from ast.walk(statement)


def _sites(tree: ast.Module):
    """(node, description, apply) for every mutation this tree offers, in a stable order."""
    seen = set()
    for node in _in_functions(tree):
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ast.If):
            yield node, "condition negated", lambda n: setattr(n, "test", ast.UnaryOp(ast.Not(), n.test))
            for position, statement in enumerate(node.body):
                if isinstance(statement, ast.Raise):
                    yield (
                        statement,
                        "refusal deleted",
                        lambda n, body=node.body, i=position: body.__setitem__(i, ast.Pass()),
                    )
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in TURNS:
            turned = TURNS[type(node.ops[0])]
            yield (
                node,
                f"{type(node.ops[0]).__name__} -> {turned.__name__}",
                lambda n, t=turned: n.ops.__setitem__(0, t()),
            )
        elif isinstance(node, ast.BoolOp):
            other = ast.Or if isinstance(node.op, ast.And) else ast.And
            yield node, f"{type(node.op).__name__} -> {other.__name__}", lambda n, o=other: setattr(n, "op", o())
        elif (
            isinstance(node, ast.Return)
            and node.value is not None
            and (
                (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str))
                or (isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "_")
            )
        ):
            yield node, "refusal message -> None", lambda n: setattr(n, "value", ast.Constant(None))


def mutants_of(path: str) -> list[Mutant]:
    """Every mutation of the file, but no comparison turned on a line marked
    ``# pragma: no mutate`` (one whose two forms are equivalent, the reason written beside it;
    the line's other mutants, a negated condition for one, still run)."""
    source = (ROOT / path).read_text(encoding="utf-8")
    tree, lines = ast.parse(source), source.split("\n")
    turned = {op.__name__ for op in TURNS}
    return [
        Mutant(path, index, getattr(node, "lineno", 0), what)
        for index, (node, what, _apply) in enumerate(_sites(tree))
        if not (what.split(" -> ")[0] in turned and "pragma: no mutate" in lines[getattr(node, "lineno", 1) - 1])
    ]


def mutated_source(mutant: Mutant) -> str:
    tree = ast.parse((ROOT / mutant.path).read_text(encoding="utf-8"))
    for index, (node, _what, apply) in enumerate(_sites(tree)):
        if index == mutant.index:
            apply(node)
            break
    return ast.unparse(ast.fix_missing_locations(tree))


def _copy(into: Path) -> Path:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.exists():
            shutil.copy2(source, into / name)
    return into


def _run_tests(where: Path, tests: list[str], timeout: float) -> bool:
    """True when the tests pass (the mutant survived)."""
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    environment.pop("DIARY_TEST_DATABASE_URL", None)  # SQLite only: one database, many mutants
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
            cwd=where,
            env=environment,
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False  # a mutant that loops is caught too
    return result.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", default=list(PACKAGES))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="diary-mutation-"))
    copies = [_copy(scratch / f"worker{n}") for n in range(args.workers)]
    free = list(copies)
    figures, survivors = {}, []
    try:
        for package in args.packages:
            modules, tests = PACKAGES[package]
            started = time.monotonic()
            if not _run_tests(copies[0], tests, timeout=600):
                print(f"{package}: the tests fail without any mutation; fix them first", file=sys.stderr)
                return 2
            timeout = max(30.0, 4 * (time.monotonic() - started))
            mutants = [m for path in modules for m in mutants_of(path)]

            def judge(mutant: Mutant, tests=tests, timeout=timeout) -> tuple[Mutant, bool]:
                where = free.pop()
                target = where / mutant.path
                original = target.read_text(encoding="utf-8")
                try:
                    target.write_text(mutated_source(mutant), encoding="utf-8")
                    return mutant, _run_tests(where, tests, timeout)
                finally:
                    target.write_text(original, encoding="utf-8")
                    free.append(where)

            with ThreadPoolExecutor(max_workers=args.workers) as pool:
                results = list(pool.map(judge, mutants))
            killed = sum(1 for _m, survived in results if not survived)
            figures[package] = (killed, len(results), time.monotonic() - started)
            survivors += [m for m, survived in results if survived]
            for mutant in (m for m, survived in results if survived):
                print(f"  survived: {mutant.path}:{mutant.line}  {mutant.what}", flush=True)
            print(
                f"{package}: {killed}/{len(results)} killed ({100 * killed / max(1, len(results)):.1f} %) "
                f"in {figures[package][2]:.0f} s",
                flush=True,
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("\nSurvivors (equivalent, or a missing test):")
    for mutant in survivors:
        print(f"  {mutant.path}:{mutant.line}  {mutant.what}")
    total_killed = sum(k for k, _n, _s in figures.values())
    total = sum(n for _k, n, _s in figures.values())
    print(f"\nAll: {total_killed}/{total} killed ({100 * total_killed / max(1, total):.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
