"""The blinding guard: for one reader and the study's state, what of the allocation may be shown.

Every page, export, chart, count and message asks here (``blinding_for``); no view decides for
itself. A reader is a staff role, ``PARTICIPANT`` or ``OPERATOR`` (the server's command line).
It may see the true allocation (the unblinded role, or every staff role once the study is
unblinded), a dummy allocation (blinded analysts and admins, to write their programs on), or none
(coordinators, the emergency role before a break, participants). Aggregates shown to a blinded
reader are pooled or split by the dummy allocation, and never show a cell of fewer than
``SMALL_CELL`` participants: a mean per true sequence beside a blinded export of per-participant
values identifies every participant's sequence (TRIAL.md, Blinding).

Imports only the vocabulary and the error type: every other module may import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Refused
from ..vocabulary import Allocation, AuditAction, Role, Split

PARTICIPANT = "participant"
OPERATOR = "operator"
# Smallest group a blinded reader sees a mean of.
SMALL_CELL = 3


# Audit events that name a participant's sequence (a randomization slot given): shown only to
# readers who see the true allocation, and never exported.
ALLOCATION_EVENTS = (str(AuditAction.ASSIGN_RANDOMIZATION_SLOT),)

# Who may break one participant's code in an emergency (ICH E6): the study stays blinded.
CODE_BREAKERS = (Role.UNBLINDED, Role.EMERGENCY)


@dataclass(frozen=True)
class Blinding:
    """What one reader may see of the allocation, decided by ``blinding_for``."""

    reader: str
    allocation: Allocation
    # The drug names behind the masked codes: only once the study is unblinded.
    drug_names: bool

    @property
    def split(self) -> Split:
        if self.allocation is Allocation.TRUE:
            return Split.TREATMENT if self.drug_names else Split.SEQUENCE
        return Split.DUMMY_SEQUENCE if self.allocation is Allocation.DUMMY else Split.POOLED

    @property
    def min_cell(self) -> int:
        """Smallest number of participants an aggregate cell may stand on to be shown."""
        return 1 if self.allocation is Allocation.TRUE else SMALL_CELL

    def shows_cell(self, n: int) -> bool:
        return n >= self.min_cell

    @property
    def hidden_audit_actions(self) -> tuple[str, ...]:
        """Audit actions this reader must not see (``ALLOCATION_EVENTS`` unless the truth)."""
        return () if self.allocation is Allocation.TRUE else ALLOCATION_EVENTS

    @property
    def is_dummy(self) -> bool:
        return self.allocation is Allocation.DUMMY


def blinding_for(study, reader: str, *, true_allocation: bool = False) -> Blinding:
    """What ``reader`` may see of ``study``'s allocation now.

    ``true_allocation``: the operator on the command line asks for the true allocation before
    unblinding (audited by the export); any other blinded reader asking is refused (403).
    """
    unblinded = study.unblinded_at is not None
    if reader == PARTICIPANT:
        # A participant's own treatment order is theirs to be told after unblinding, by the
        # study team; no page of the diary shows an allocation.
        return Blinding(reader, Allocation.NONE, drug_names=False)
    if unblinded:
        return Blinding(reader, Allocation.TRUE, drug_names=True)
    if reader == Role.UNBLINDED or (reader == OPERATOR and true_allocation):
        return Blinding(reader, Allocation.TRUE, drug_names=False)
    if true_allocation:
        raise Refused("Only the unblinded role sees the true allocation before unblinding.", status=403)
    if reader in (Role.ANALYST, Role.ADMIN, OPERATOR):
        return Blinding(reader, Allocation.DUMMY, drug_names=False)
    return Blinding(reader, Allocation.NONE, drug_names=False)


def treatment_order_for(study, participant, protocol) -> list[tuple[int, str]] | None:
    """A participant's own treatment order for their diary, [(infusion number, sealed name)]: only
    once the whole study is unblinded, and only if they asked to be told (ICH E6(R3) 2.8.10).
    None otherwise: before unblinding no participant page carries an arm, whoever asks (an
    emergency code break leaves the study blinded, so it does not count)."""
    if study.unblinded_at is None or not participant.told_treatment_order:
        return None
    codes = protocol.sequences.get(participant.sequence)
    if not codes:
        return None
    return [(number, protocol.treatments.get(code) or code) for number, code in enumerate(codes, start=1)]


def may_break_code(reader: str) -> bool:
    return reader in CODE_BREAKERS
