"""Participants: enrolment, withdrawal and contact details (``enrolment``), their diary links
(``links``), PINs (``pins``) and their own choices about reminders and language (``preferences``).

May import: the core modules, ``protocol``, ``governance``, ``study``, ``dosing``. Reminders are
told of a channel turned off through ``diary.events``, never imported."""
