"""The demo study: ten simulated participants with doses placed around today.

Deterministic for a given seed and ``now``: the same answers, the same missed entries. Entries
whose windows are open right now are left for the person trying the demo.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from .dosing.infusions import record_dose
from .entries.recording import field_name, record_submission
from .errors import Refused
from .extensions import db
from .governance import audit
from .governance.staff import create_user
from .models import Participant, RandomizationSlot, StaffUser
from .participants.enrolment import enroll, participant_link
from .protocol import shipped_protocol_path
from .protocol.loader import shipped_protocols
from .reporting.audit_review import record_review
from .safety.follow_up import create_tasks
from .study.randomization import ensure_dummy_allocation
from .study.trial import ensure_study, protocol_of
from .vocabulary import ActorKind, ItemType, Sex

SITE = "NIH-CC"
TIMEZONE = "America/New_York"
DEMO_LOGINS = {
    "coordinator": ("coordinator@demo.diary", "demo-coordinator-pass"),
    "analyst": ("analyst@demo.diary", "demo-analyst-pass"),
    "unblinded": ("unblinded@demo.diary", "demo-unblinded-pass"),
    "admin": ("admin@demo.diary", "demo-admin-pass"),
    "emergency": ("emergency@demo.diary", "demo-emergency-pass"),
    "investigator": ("investigator@demo.diary", "demo-investigator-pass"),
}
# How long ago each participant's infusions started: (infusion 1, infusion 2 or None).
# Chosen so that different windows are open right now across the ten participants.
STAGES = [
    (timedelta(days=31), timedelta(days=17)),  # finished both periods
    (timedelta(days=29), timedelta(days=15)),  # infusion 2, Day 14 open
    (timedelta(days=21), timedelta(days=6, hours=12)),  # infusion 2, Day 7 open
    (timedelta(days=17), timedelta(hours=70)),  # infusion 2, Day 3 open
    (timedelta(days=15), timedelta(hours=22)),  # infusion 2, Day 1 open
    (timedelta(days=13), None),  # infusion 1, Day 14 open
    (timedelta(days=6, hours=12), None),  # infusion 1, Day 7 open
    (timedelta(hours=70), None),  # infusion 1, Day 3 open
    (timedelta(hours=22), None),  # infusion 1, Day 1 open
    (timedelta(hours=3, minutes=50), None),  # infusion day, 4-hour entry open
]
LINK_STAGE = 8  # the participant whose link is printed: Day 1 asks every instrument
# Entries that are always missed, so the coordinators' follow-up list has something to show:
# (participant index, infusion, time point). Participant 7 goes silent after infusion day.
ALWAYS_MISSED = {(2, 1, "D3"), (6, 1, "D1"), (6, 1, "D3")}
# Mean % change of fatigue by time point under each masked treatment (simulated).
EFFECT = {
    "A": {"M40": -8, "M80": -14, "M120": -18, "M230": -22, "D1": -34, "D2": -28, "D3": -24, "D7": -14, "D14": -6},
    "B": {"M40": -6, "M80": -10, "M120": -12, "M230": -14, "D1": -18, "D2": -16, "D3": -14, "D7": -9, "D14": -4},
}


@dataclass
class DemoResult:
    participants: int = 0
    submissions: int = 0
    missed: int = 0
    logins: dict = field(default_factory=dict)
    link: str = ""
    link_code: str = ""
    follow_up_tasks: int = 0


def has_participants() -> bool:
    return bool(db.session.scalar(select(func.count()).select_from(Participant)))


def build_demo(*, now: datetime, seed: int = 20191018, protocol_name: str | None = None) -> DemoResult:
    """The demo study under the configured protocol, or the shipped protocol ``protocol_name``
    (then the empty study takes that protocol as its current version)."""
    if protocol_name is not None and not shipped_protocol_path(protocol_name).exists():
        raise Refused(f"No shipped protocol '{protocol_name}'; the diary ships {', '.join(shipped_protocols())}.")
    if has_participants():
        raise Refused("The database already holds participants; the demo needs an empty study.")
    study, _ = ensure_study(shipped_protocol_path(protocol_name) if protocol_name else None)
    protocol = protocol_of(study.current_protocol_version)
    if study.slug != protocol.id:  # an empty study that another protocol created: it is this one now
        study.slug, study.name = protocol.id, protocol.title
    if not protocol.has_infusions:
        return _build_daily_demo(study, protocol, now=now, seed=seed)
    rng = random.Random(seed)
    result = DemoResult()
    _staff(result, now)

    # The trial's allocation: 4 in sequence AB, 6 in BA, in a shuffled randomization list,
    # then ten free slots so that a coordinator trying the demo can enrol someone new.
    sequences = ["AB"] * 4 + ["BA"] * 6
    rng.shuffle(sequences)
    spare = ["AB"] * 5 + ["BA"] * 5
    rng.shuffle(spare)
    sequences += spare
    for position, sequence in enumerate(sequences, start=1):
        db.session.add(RandomizationSlot(study_id=study.id, site=SITE, position=position, sequence=sequence))
    db.session.flush()
    ensure_dummy_allocation(study)  # the list's sequences shuffled over its slots, as an upload does

    for index, (first_ago, second_ago) in enumerate(STAGES):
        enrolled_at = now - first_ago - timedelta(days=3)
        participant, token = enroll(
            study,
            site=SITE,
            timezone=TIMEZONE,
            actor=ActorKind.DEMO,
            now=enrolled_at,
            code=_demo_code(rng),
            email=f"participant{index + 1:02d}@demo.diary",
            # Demographics from the index, not the seeded generator, so the simulated entries stay
            # as they were; the last participant's sex was not collected.
            sex=Sex.UNKNOWN if index == len(STAGES) - 1 else (Sex.FEMALE, Sex.MALE)[index % 2],
            birth_year=1950 + (index * 7) % 45,
        )
        result.participants += 1
        if index == LINK_STAGE:
            result.link, result.link_code = participant_link(token), participant.code
        for number, ago in ((1, first_ago), (2, second_ago)):
            if ago is None:
                continue
            # Doses on round quarter hours, as a nurse would note them.
            start = (now - ago).replace(second=0, microsecond=0)
            start -= timedelta(minutes=start.minute % 15)
            record_dose(participant, number, start, actor=ActorKind.DEMO, now=start + timedelta(minutes=5))
        baseline = rng.uniform(55, 80)
        for period in participant.periods:
            if period.dose_start is None:
                continue
            period_baseline = baseline - (5 if period.number == 2 else 0)  # some carry-over
            for assessment in period.assessments:
                _simulate(
                    assessment,
                    period,
                    period_baseline,
                    protocol,
                    rng,
                    now,
                    result,
                    always_missed=(index, period.number, assessment.timepoint) in ALWAYS_MISSED,
                )
    return _finish(study, result, now)


def _staff(result: DemoResult, now: datetime) -> None:
    for role, (email, password) in DEMO_LOGINS.items():
        if not db.session.scalar(select(StaffUser.id).where(StaffUser.email == email)):
            create_user(email, password, role, actor=ActorKind.DEMO, now=now)
        result.logins[role] = (email, password)


def _finish(study, result: DemoResult, now: datetime) -> DemoResult:
    db.session.flush()
    # The coordinators' home page opens on the follow-up calls the simulated misses call for.
    result.follow_up_tasks = create_tasks(study, now)
    # The investigator has looked at one audit-trail check once, so the review log is not empty.
    investigator = db.session.scalar(select(StaffUser).where(StaffUser.email == DEMO_LOGINS["investigator"][0]))
    record_review(
        study,
        "unusual_hours",
        "First look at the night-time entries: each one was checked by phone.",
        by=investigator,
        now=now,
    )
    return result


# How often a simulated entry reports each side effect as mild.
MILD_CHANCE = {"headache": 0.12, "dizziness": 0.10, "constipation": 0.08}

# A study without infusions (anchored to randomization): how many days ago each of the ten
# participants was randomized, so that each stage of a 28-day diary is on show.
DAILY_STAGES = [44, 40, 37, 34, 31, 29, 18, 9, 3, 0]
DAILY_LINK_STAGE = 7  # a participant mid-diary, with tonight's entry to make
# Fraction of the baseline the measure falls by at the last time point, by masked arm.
DAILY_EFFECT = {0: 0.35, 1: 0.15}


def _build_daily_demo(study, protocol, *, now: datetime, seed: int) -> DemoResult:
    """Ten participants randomized over the last month, their evening entries simulated: the
    endpoints' measure falls from its baseline, more in the first arm than in the second."""
    rng = random.Random(seed)
    result = DemoResult()
    _staff(result, now)
    arms = list(protocol.sequences)
    allocation = [arms[i % len(arms)] for i in range(20)]
    rng.shuffle(allocation)
    for position, sequence in enumerate(allocation, start=1):
        db.session.add(RandomizationSlot(study_id=study.id, site=SITE, position=position, sequence=sequence))
    db.session.flush()
    ensure_dummy_allocation(study)
    plan = protocol.endpoints
    last = max(tp.target.nominal for tp in protocol.timepoints)
    for index, days_ago in enumerate(DAILY_STAGES):
        enrolled_at = (now - timedelta(days=days_ago, hours=rng.uniform(2, 6))).replace(second=0, microsecond=0)
        participant, token = enroll(
            study,
            site=SITE,
            timezone=TIMEZONE,
            actor=ActorKind.DEMO,
            now=enrolled_at,
            code=_demo_code(rng),
            email=f"participant{index + 1:02d}@demo.diary",
            sex=(Sex.FEMALE, Sex.MALE)[index % 2],
            birth_year=1950 + (index * 7) % 45,
        )
        result.participants += 1
        if index == DAILY_LINK_STAGE:
            result.link, result.link_code = participant_link(token), participant.code
        period = participant.periods[0]
        baseline = rng.uniform(5.5, 8.0)
        effect = DAILY_EFFECT[arms.index(period.treatment) % 2]
        for assessment in sorted(period.assessments, key=lambda a: a.target):
            if assessment.late_close > now:
                continue  # open now or to come: left for the person trying the demo
            if rng.random() < 0.08:
                result.missed += 1
                continue
            timepoint = protocol.timepoint(assessment.timepoint)
            progress = timepoint.target.nominal / last
            measured = {}
            if plan is not None:
                value = baseline * (1 - effect * progress) + rng.gauss(0, 0.8)
                measured[(plan.instrument, plan.item)] = round(min(10, max(0, value)))
            span = (assessment.window_close - assessment.window_open).total_seconds()
            at = assessment.window_open + timedelta(seconds=rng.uniform(0.1, 0.8) * span)
            form = _form(protocol, timepoint, rng, measured=measured)
            record_submission(
                assessment, form, now=at, actor=audit.participant_actor(participant), device_time=at.isoformat()
            )
            result.submissions += 1
    return _finish(study, result, now)


def _form(protocol, timepoint, rng, *, vas: int = 0, measured: dict | None = None) -> dict:
    """An entry's form as the phone posts it: ``vas`` for a VAS, the endpoints' measure from
    ``measured``, other answers drawn from ``rng`` (in a fixed order, so a seed repeats)."""
    measured = measured or {}
    form = {}
    for instrument in protocol.instruments_for(timepoint):
        for item in instrument.items:
            name = field_name(instrument, item)
            if (instrument.id, item.id) in measured:
                form[name] = str(measured[(instrument.id, item.id)])
                if item.type == ItemType.VAS:
                    form[f"{name}.touched"] = "1"
            elif item.type == ItemType.VAS:
                form[name], form[f"{name}.touched"] = str(vas), "1"
            elif item.type == ItemType.NRS:
                form[name] = str(rng.randint(3, 7))
            elif item.type == ItemType.SINGLE_CHOICE:
                form[name] = rng.choice(item.choices).code
            elif item.type == ItemType.SEVERITY_CHECKLIST:
                for term in item.terms:
                    chance = MILD_CHANCE.get(term.code)
                    severity = "mild" if chance is not None and rng.random() < chance else "none"
                    form[field_name(instrument, item, term.code)] = severity
    return form


def _demo_code(rng: random.Random) -> str:
    alphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
    return "P-" + "".join(rng.choice(alphabet) for _ in range(6))


def _simulate(assessment, period, baseline, protocol, rng, now, result, always_missed=False) -> None:
    """Answer an assessment whose window has fully passed, or leave it missed."""
    if assessment.late_close > now:
        return  # open now or still to come: left for the person trying the demo
    if rng.random() < 0.07 or always_missed:
        result.missed += 1
        return
    span = (assessment.window_close - assessment.window_open).total_seconds()
    at = assessment.target + timedelta(seconds=rng.uniform(-0.1, 0.25) * span)
    at = min(max(at, assessment.window_open + timedelta(minutes=1)), assessment.window_close - timedelta(minutes=1))
    timepoint = protocol.timepoint(assessment.timepoint)
    effect = 0 if timepoint.code == "BL" else EFFECT[period.treatment].get(timepoint.code, 0)
    vas = round(min(100, max(0, baseline * (1 + effect / 100) + rng.gauss(0, 5))))
    form = _form(protocol, timepoint, rng, vas=vas)
    participant = period.participant
    record_submission(assessment, form, now=at, actor=audit.participant_actor(participant), device_time=at.isoformat())
    result.submissions += 1
