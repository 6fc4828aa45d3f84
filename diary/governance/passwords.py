"""Password and PIN hashing with Argon2id (argon2-cffi's defaults follow RFC 9106)."""

from __future__ import annotations

import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..errors import Refused

_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 12

# Argon2 is made to be slow and memory-hungry: a flood of sign-ins would take every core from
# the participants' pages. At most this many checks run at once per process; one more waits a
# moment, then is refused at once (503) instead of queueing (DIARY_HASHING_CONCURRENCY).
HASHING_SLOTS = threading.BoundedSemaphore(2)
HASHING_WAIT_SECONDS = 0.5


def set_hashing_concurrency(slots: int) -> None:
    global HASHING_SLOTS
    HASHING_SLOTS = threading.BoundedSemaphore(max(1, int(slots)))


class HashingBusy(Refused):
    def __init__(self):
        super().__init__("The diary is busy checking other sign-ins. Please try again in a moment.", status=503)


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(stored_hash: str | None, secret: str) -> bool:
    """Check a password or PIN against its hash, under the process's hashing cap (``HashingBusy``
    when every slot stays taken)."""
    if not stored_hash:
        return False
    slots = HASHING_SLOTS
    if not slots.acquire(timeout=HASHING_WAIT_SECONDS):
        raise HashingBusy()
    try:
        return _hasher.verify(stored_hash, secret)
    except (VerificationError, InvalidHashError):
        return False
    finally:
        slots.release()
