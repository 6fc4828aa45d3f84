"""Running the service: the health report and scheduler heartbeat (``status``) and backups
(``backups``).

May import: anything but ``web``."""
