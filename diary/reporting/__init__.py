"""What the staff pages count and draw: adherence (``adherence``), the study figures behind the
grid and the summary (``figures``, ``summary``), charts (``charts``) and one participant's page
(``participant_record``). Reads only; stores nothing but its own counts.

May import: every rule package (``protocol`` ... ``entries``, ``safety``); not reminders, exports or web."""
