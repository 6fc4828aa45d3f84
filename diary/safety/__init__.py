"""Safety: side-effect alerts, reviews and the emergency code break (``alerts``), acknowledgement
of reports (``side_effects``), follow-up tasks for missed entries (``follow_up``) and the site's
daily digest (``digest``).

May import: the core modules, ``protocol``, ``governance``, ``study``, ``dosing``, ``participants``."""
