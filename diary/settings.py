"""The one door through which the rule packages read the deployment's configuration.

Rules take the request's facts (who, when, which language) as arguments. The few settings a rule
needs that belong to the deployment rather than to a request (site phone numbers and alert
addresses, the public address, the signing secret, PIN lock-out limits) are read here, from the
running app's configuration (``diary/config.py`` says each one's meaning and default). The
architecture test refuses ``current_app`` anywhere else in the rule packages, so
``grep -rn "setting(" diary`` lists every setting a rule depends on.
"""

from __future__ import annotations

from flask import current_app

_REQUIRED = object()


def setting(name: str, default=_REQUIRED):
    """The configured value of ``name`` (``DIARY_<name>`` in the environment)."""
    if default is _REQUIRED:
        return current_app.config[name]
    return current_app.config.get(name, default)
