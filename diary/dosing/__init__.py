"""Dosing and the schedule: planned and recorded infusions (``infusions``) and the assessments
they anchor, with the one read model of an assessment's state (``assessments``).

May import: the core modules, ``protocol``, ``governance``, ``study``."""
