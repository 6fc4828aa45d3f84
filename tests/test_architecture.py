"""The house rules of the code, checked by reading it: the packages import only what sits below
them, the web layer stands apart, rules reach neither the request nor the app's configuration
directly, and each word of the trial's vocabulary is written once."""

from __future__ import annotations

import ast
from enum import StrEnum
from pathlib import Path

import pytest

from diary import vocabulary

PACKAGE = Path(__file__).resolve().parent.parent / "diary"
# Request-bound names a rule must not reach for: it takes what it needs as arguments.
FORBIDDEN_FROM_FLASK = {"request", "session", "render_template", "render_template_string", "g"}


def _modules(include_web: bool):
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "migrations":
            continue  # historic schema steps, frozen as they were
        if (relative.parts[0] == "web") != include_web:
            continue
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, tree: ast.AST):
    """(module imported, names imported) for every import in a file, relative ones resolved."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = tuple(alias.name for alias in node.names)
            yield module, names
            for name in names:  # "from . import web" imports the module diary.web
                yield f"{module}.{name}", ()


def _prints(path: Path, names) -> bool:
    """diary/documents.py renders printed documents (the archive's PDFs) for the CLI and the web
    alike: render_template, and nothing else of the request, is allowed there."""
    return path == PACKAGE / "documents.py" and FORBIDDEN_FROM_FLASK & set(names) <= {"render_template"}


def _violations() -> list[str]:
    found = []
    for path, tree in _modules(include_web=False):
        where = path.relative_to(PACKAGE.parent)
        for module, names in _imports(path, tree):
            if module == "diary.web" or module.startswith("diary.web."):
                if _module_name(path) != "diary":  # create_app registers the web layer, nothing else
                    found.append(f"{where} imports {module}")
            if module == "flask" and FORBIDDEN_FROM_FLASK & set(names) and not _prints(path, names):
                found.append(f"{where} imports {sorted(FORBIDDEN_FROM_FLASK & set(names))} from flask")
            if (module.startswith("flask_wtf") or module.startswith("wtforms")) and path.name != "extensions.py":
                # extensions.py only holds the unbound CSRF instance the web layer binds.
                found.append(f"{where} imports {module} (forms live in diary/web)")
    return found


# The core modules everything may import; they import only each other.
CORE = {"config", "database", "errors", "events", "extensions", "i18n", "localtime", "models", "settings", "vocabulary"}
# The modules that put the app together; they may import anything.
COMPOSITION = {"__init__", "cli", "demo", "documents", "web"}
RULES = {"protocol", "governance", "study", "dosing", "participants", "safety", "entries"}
# What each package may import besides the core modules and itself (its __init__ says the same).
MAY_IMPORT = {
    "protocol": set(),
    "governance": set(),
    "study": {"protocol", "governance"},
    "dosing": {"protocol", "governance", "study"},
    "participants": {"protocol", "governance", "study", "dosing"},
    "safety": {"protocol", "governance", "study", "dosing", "participants"},
    "entries": {"protocol", "governance", "study", "dosing", "participants", "safety"},
    "reporting": RULES,
    "exports": RULES | {"reporting"},
    "reminders": RULES | {"reporting", "operations"},
    "operations": RULES | {"reporting", "reminders"},
    "archive": RULES | {"reporting", "exports"},
}
# What a rule package must not take from flask or flask_babel: the request, and the app's
# configuration except through diary.settings. The language comes as an argument; gettext for
# a refusal's message is allowed (it follows whatever locale the caller set).
FORBIDDEN_IN_RULES = {
    "flask": {"current_app", "request", "session", "g"},
    "flask_babel": {"get_locale", "force_locale", "refresh"},
}


def _part_of(module: str) -> str | None:
    """The package (or core/composition module) a dotted ``diary`` module belongs to."""
    parts = module.split(".")
    if parts[0] != "diary":
        return None
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def _package_violations() -> list[str]:
    found = []
    for path, tree in list(_modules(include_web=False)):
        where = path.relative_to(PACKAGE.parent)
        own = _part_of(_module_name(path))
        if path.parent == PACKAGE and path.stem not in ("__init__",):
            own = path.stem
        if own in COMPOSITION or own == "translations":
            continue
        allowed = CORE | {own} | (set() if own in CORE else MAY_IMPORT.get(own, set()))
        for module, names in _imports(path, tree):
            target = _part_of(module)
            if (
                target is not None
                and target != "__init__"
                and target not in allowed
                and (PACKAGE / target).with_suffix(".py").exists() | (PACKAGE / target).is_dir()
            ):
                found.append(f"{where} imports {module} ({own} may not import {target})")
            if own in RULES and module in FORBIDDEN_IN_RULES and FORBIDDEN_IN_RULES[module] & set(names):
                found.append(f"{where} takes {sorted(FORBIDDEN_IN_RULES[module] & set(names))} from {module}")
    return found


def test_each_package_imports_only_what_sits_below_it():
    """Rules never import reminders, reporting, exports or the web; the core imports no package;
    rule packages read the request and the configuration only through their arguments and
    diary.settings."""
    assert _package_violations() == []


def test_the_package_rules_find_a_planted_violation():
    """The package check is not vacuous: an entries module importing the reminders, a governance
    module importing the study, and a rule reading current_app and the locale are each caught."""
    planted = [PACKAGE / "entries" / "_planted.py", PACKAGE / "governance" / "_planted.py"]
    planted[0].write_text(
        "from ..reminders.planning import cancel_for\nfrom flask import current_app\n"
        "from flask_babel import get_locale\n",
        encoding="utf-8",
    )
    planted[1].write_text("from ..study.trial import protocol_of\n", encoding="utf-8")
    try:
        found = _package_violations()
    finally:
        for path in planted:
            path.unlink()
    assert "diary/entries/_planted.py imports diary.reminders.planning (entries may not import reminders)" in found
    assert "diary/governance/_planted.py imports diary.study.trial (governance may not import study)" in found
    assert "diary/entries/_planted.py takes ['current_app'] from flask" in found
    assert "diary/entries/_planted.py takes ['get_locale'] from flask_babel" in found


def test_nothing_outside_the_web_layer_imports_it_or_the_request():
    """Rules, CLI and scheduler never import diary.web, flask.request/session/g or render templates."""
    assert _violations() == []


def test_the_import_walk_finds_a_planted_violation(tmp_path, monkeypatch):
    """The boundary check is not vacuous: a rule module importing the web layer is caught."""
    planted = PACKAGE / "_planted_violation.py"
    planted.write_text("from .web.auth import roles_required\nfrom flask import request\n", encoding="utf-8")
    try:
        found = _violations()
    finally:
        planted.unlink()
    assert any("_planted_violation.py imports diary.web.auth" in line for line in found)
    assert any("['request'] from flask" in line for line in found)


def test_every_blueprint_lives_in_the_web_package():
    """Blueprints and forms are defined only under diary/web."""
    for path, tree in _modules(include_web=False):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Blueprint":
                pytest.fail(f"{path} defines a Blueprint outside diary/web")


ENUMS = [
    value
    for value in vars(vocabulary).values()
    if isinstance(value, type) and issubclass(value, StrEnum) and value is not StrEnum
]


def _word_lists():
    """Tuple, list and set literals of two or more strings, everywhere but the vocabulary."""
    for path, tree in list(_modules(include_web=False)) + list(_modules(include_web=True)):
        if path.name == "vocabulary.py":
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, (ast.Tuple, ast.List, ast.Set))
                and len(node.elts) >= 2
                and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts)
            ):
                yield path, node.lineno, {e.value for e in node.elts}


def test_each_vocabulary_word_list_is_defined_once():
    """No module re-lists states, sources, severities, roles or reminder words by hand."""
    repeated = []
    for path, line, words in _word_lists():
        for enum in ENUMS:
            if words <= {member.value for member in enum}:
                repeated.append(f"{path.relative_to(PACKAGE.parent)}:{line} re-lists {enum.__name__}: {sorted(words)}")
    assert repeated == []


def test_check_constraints_are_built_from_the_vocabulary(app):
    """The database's check constraints name exactly the enum's words."""
    from diary.models import Participant, Reminder, SideEffectReport, StaffUser, Submission
    from diary.vocabulary import ParticipantStatus, ReminderState, Role, Severity, Source

    def constraint(model, name):
        for item in model.__table__.constraints:
            if getattr(item, "name", None) and str(item.name).endswith(name):
                return str(item.sqltext)
        raise KeyError(name)

    for model, name, enum in (
        (Participant, "status", ParticipantStatus),
        (Submission, "source", Source),
        (StaffUser, "role", Role),
        (Reminder, "state", ReminderState),
    ):
        text = constraint(model, name)
        assert all(f"'{word}'" in text for word in enum), (model, text)
    severity = constraint(SideEffectReport, "severity")
    assert all(f"'{word}'" in severity for word in Severity.reported()) and "'none'" not in severity


# Words compared by hand would be leaks. Audit actions are left out here ("submit" is also a
# form's step): the test below holds every audit event to the AuditAction enum instead.
WORDS = {member.value: enum.__name__ for enum in ENUMS if enum is not vocabulary.AuditAction for member in enum}
TEMPLATES = PACKAGE.parent / "templates"


def _python_comparisons(path: Path, tree: ast.AST):
    """A vocabulary word compared by hand in Python (``status != "active"``). A blueprint's
    name is not the vocabulary's ("participant" is also a Source)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        if any(isinstance(o, ast.Attribute) and o.attr == "blueprint" for o in operands):
            continue
        for operand in operands:
            if isinstance(operand, ast.Constant) and isinstance(operand.value, str) and operand.value in WORDS:
                yield (
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno} compares '{operand.value}' "
                    f"(use {WORDS[operand.value]})"
                )


def _template_comparisons(name: str, text: str):
    """The same in a template (``report.severity == 'severe'``)."""
    import re

    for number, line in enumerate(text.split("\n"), 1):
        for found in re.finditer(r"(?:==|!=)\s*['\"]([a-z_]+)['\"]", line):
            if found.group(1) in WORDS:
                yield f"{name}:{number} compares '{found.group(1)}' (use {WORDS[found.group(1)]})"


def test_no_word_of_the_vocabulary_is_compared_by_hand_in_code_or_templates():
    """Rules, views and templates compare with the enums (templates have them as globals)."""
    found = []
    for path, tree in list(_modules(include_web=False)) + list(_modules(include_web=True)):
        if path.name != "vocabulary.py":
            found += list(_python_comparisons(path, tree))
    for template in sorted(TEMPLATES.rglob("*.html")):
        found += list(_template_comparisons(str(template.relative_to(PACKAGE.parent)), template.read_text("utf-8")))
    assert found == []


def test_the_comparison_check_finds_planted_words():
    tree = ast.parse("if participant.status != 'active':\n    pass\nif request.blueprint == 'participant':\n    pass\n")
    assert [line.split(" ", 1)[1] for line in _python_comparisons(PACKAGE / "x.py", tree)] == [
        "compares 'active' (use ParticipantStatus)"
    ]
    planted = "{% if report.severity == 'severe' %}{% endif %}\n{% if item.type == \"vas\" %}{% endif %}"
    assert list(_template_comparisons("t.html", planted)) == [
        "t.html:1 compares 'severe' (use Severity)",
        "t.html:2 compares 'vas' (use ItemType)",
    ]


def test_every_audit_event_names_an_action_of_the_vocabulary(app):
    """No audit action is written as a string literal, and ``audit.row`` refuses a word the
    vocabulary does not have."""
    from diary.governance import audit
    from diary.models import now_utc

    literal = []
    for path, tree in list(_modules(include_web=False)) + list(_modules(include_web=True)):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "action" and any(
                        isinstance(n, ast.Constant) and isinstance(n.value, str) for n in ast.walk(keyword.value)
                    ):
                        literal.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert literal == []
    with pytest.raises(ValueError, match="made_up"):
        audit.row(actor="system", action="made_up", entity="study", entity_id=None, now=now_utc())
    assert (
        audit.row(actor="system", action="enroll", entity="study", entity_id=None, now=now_utc())["action"] == "enroll"
    )


def test_signing_in_is_its_own_blueprint(app):
    """Password, second factor, its setup, sign-out and password change are the signin
    blueprint's, not the coordinator workspace's."""
    endpoints = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    for path in ("/staff/login", "/staff/login/code", "/staff/second-factor", "/staff/logout", "/staff/password"):
        assert endpoints[path].startswith("signin."), (path, endpoints[path])
    assert not [
        endpoint
        for endpoint in endpoints.values()
        if endpoint.startswith("staff.")
        and endpoint.split(".")[1] in ("login", "second_step", "second_factor_setup", "logout", "password")
    ]
