"""Configuration defaults.

Layers, later ones winning: these defaults, then ``instance/config.py``, then ``DIARY_*``
environment variables (``DIARY_DATABASE_URL`` becomes ``DATABASE_URL``), then a test's mapping.
Nothing here reads the environment at import time.
"""

# The database. Empty means the embedded SQLite file in the instance folder.
DATABASE_URL = ""

# How many proxies in front of the app to trust for the client's address, scheme and host
# (X-Forwarded-For/-Proto/-Host): 1 behind one HTTPS proxy, 0 when clients connect directly.
TRUSTED_PROXIES = 0

# PostgreSQL: connections per process, and the longest a statement may run.
DATABASE_POOL_SIZE = 5
DATABASE_MAX_OVERFLOW = 10
DATABASE_STATEMENT_TIMEOUT_MS = 30000

# Which shipped protocol (file name in diary/protocols without .yaml) a new study uses.
PROTOCOL = "ketamine-fatigue-crossover"
# A study's own protocol file (a path); when set it is used instead of the shipped one.
PROTOCOL_FILE = ""
STUDY_NAME = "Ketamine and fatigue: a crossover trial"

# Links handed to participants and printed by the CLI are absolute, so they need the address
# the trial's server is reached at.
BASE_URL = "http://127.0.0.1:5000"

# Phone numbers shown to participants when an answer calls for help, per site, with a fallback.
SITE_CONTACTS = {"NIH-CC": "+1 301 555 0100"}
DEFAULT_SITE_CONTACT = "+1 301 555 0100"
# Who is told at once when a participant gives a severe answer, or a code is broken, per site
# ("*" for every site): {"NIH-CC": ["oncall@site.org"]}. Emails go through the outbox.
SITE_ALERTS = {"NIH-CC": ["oncall@demo.diary"]}
DEFAULT_TIMEZONE = "America/New_York"
# Each site's clock, for its daily digest ({"NIH-CC": "America/New_York"}; DEFAULT_TIMEZONE
# otherwise), and the local hour the digest goes out (to the site's alert recipients; None: none).
SITE_TIMEZONES = {}
# The language of each site's archive (its participants' paper diaries, README): {"HUVH": "es"};
# English otherwise (i18n.LANGUAGES).
SITE_LANGUAGES = {}
# Each site's country, ISO 3166-1 alpha-3, for the SDTM demographics (DM.COUNTRY).
SITE_COUNTRIES = {"NIH-CC": "USA"}
DIGEST_HOUR = 8
# How long a scheduler's claim on an outbox row holds without renewal (it renews every quarter).
OUTBOX_LEASE_SECONDS = 60

# Participant access: how long a phone stays remembered, and the PIN lockout.
PARTICIPANT_REMEMBER_DAYS = 30
PIN_MAX_ATTEMPTS = 5
PIN_LOCK_MINUTES = 15
# An entry made on the phone without a connection is refused if, when it is sent, the phone's
# clock differs from the server's by more than this (its time could not be trusted).
OFFLINE_CLOCK_TOLERANCE_MINUTES = 10

# A second factor (TOTP) for every staff role; admin, unblinded and emergency always need one.
REQUIRE_2FA = False

# The study figures on the adherence and summary pages (compliance per time point, counts by
# state, the sorting and filters of the grid) are counted by the scheduler each minute; pages use
# that count while it is at most this old, and count at the request otherwise (0: always).
FIGURES_MAX_AGE_SECONDS = 180

# Password and PIN checks (Argon2) running at once per process; one more is refused at once (503)
# rather than queued, so a flood of sign-ins cannot take the participants' pages down with it.
HASHING_CONCURRENCY = 2

# Staff sessions end after this much idle time.
STAFF_IDLE_MINUTES = 30

# Responses compressed on the wire (Flask-Compress): pages, styles, scripts and data over 1 KB.
COMPRESS_MIMETYPES = [
    "text/html",
    "text/css",
    "text/javascript",
    "application/javascript",
    "application/json",
    "text/calendar",
    "image/svg+xml",
    "application/manifest+json",
]
COMPRESS_MIN_SIZE = 1024
COMPRESS_ALGORITHM = ["br", "gzip"]

# Bodies larger than this are refused with 413 before any view runs.
MAX_CONTENT_LENGTH = 2 * 1024 * 1024

# CSRF tokens live as long as a tired participant might keep a form open; after that the
# entry page comes back with the answers filled in (see participant views).
WTF_CSRF_TIME_LIMIT = 4 * 3600

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# Reminders by email. With no SMTP host, emails are not sent: they are recorded as not_sent with
# the reason, printed by the scheduler, and staff pages say so.
SMTP_HOST = ""
SMTP_PORT = 25
SMTP_USERNAME = ""
SMTP_PASSWORD = ""
SMTP_STARTTLS = False
SMTP_TIMEOUT = 10
MAIL_FROM = "diary@localhost"

# Web push (VAPID). `init` generates a key pair into instance/config.py when none is set.
VAPID_PRIVATE_KEY = ""
VAPID_PUBLIC_KEY = ""
VAPID_SUBJECT = "mailto:diary@localhost"
PUSH_TIMEOUT = 10
