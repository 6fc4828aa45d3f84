"""Reminder channels: email over SMTP and web push. With neither configured a message is not
sent, and says so (``NoChannel``): the scheduler prints it in full and records why.

Messages say nothing about the drug or the condition in the subject line.
"""

from __future__ import annotations

import base64
import json
import smtplib
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import cached_property
from html import escape

from flask_babel import force_locale
from flask_babel import gettext as _

from ..vocabulary import ReminderKind


@dataclass
class Message:
    """What one reminder says, whatever the channel, in the participant's language."""

    kind: str
    to_email: str | None
    label: str
    closes: str
    link: str
    language: str = "en"

    @cached_property
    def _said(self) -> dict[str, str]:
        with force_locale(self.language):
            opened = self.kind == ReminderKind.WINDOW_OPEN
            return {
                "subject": _("Your diary: an entry is open") if opened else _("Your diary: an entry closes soon"),
                "hello": _("Hello,"),
                "news": (
                    _("Your diary entry %(label)s is open now.", label=self.label)
                    if opened
                    else _("Your diary entry %(label)s closes soon.", label=self.label)
                )
                + " "
                + _("Please fill it in before %(when)s.", when=self.closes),
                "open": _("Open your diary"),
                "thanks": _("Thank you."),
            }

    @property
    def subject(self) -> str:
        return self._said["subject"]

    @property
    def text(self) -> str:
        say = self._said
        return f"{say['hello']}\n\n{say['news']}\n\n{say['open']}: {self.link}\n\n{say['thanks']}\n"

    @property
    def html(self) -> str:
        say = self._said
        return (
            f"<p>{escape(say['hello'])}</p><p>{escape(say['news'])}</p>"
            f'<p><a href="{escape(self.link)}">{escape(say["open"])}</a></p><p>{escape(say["thanks"])}</p>'
        )

    @property
    def push_body(self) -> str:
        return self._said["news"]


@dataclass
class Notice:
    """An email to the study team (an alert, a notice, a digest): subject and text as written."""

    kind: str
    to_email: str
    subject: str
    text: str
    link: str = ""


class DeliveryFailed(Exception):
    """A send that may succeed later (the server was down, busy, or refused for now)."""


class Undeliverable(Exception):
    """This message can never be sent as it is (an address the mail server cannot take)."""


class SubscriptionGone(Exception):
    """The push service says the subscription no longer exists (404 or 410)."""


class NoChannel(Exception):
    """No channel is configured to carry this message (no SMTP server, no web push key): it is
    recorded as not_sent with this reason, and printed in full by the scheduler."""


class EmailChannel:
    """One SMTP connection for a whole dispatch pass; reconnects once if the server drops it."""

    def __init__(self, config):
        self.host = config.get("SMTP_HOST") or ""
        self.port = int(config.get("SMTP_PORT") or 25)
        self.username = config.get("SMTP_USERNAME") or ""
        self.password = config.get("SMTP_PASSWORD") or ""
        self.starttls = bool(config.get("SMTP_STARTTLS"))
        self.sender = config.get("MAIL_FROM") or "diary@localhost"
        self.timeout = float(config.get("SMTP_TIMEOUT") or 10)
        self.connection: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.starttls:
            connection.starttls()
        if self.username:
            connection.login(self.username, self.password)
        return connection

    def html(self, message: Message) -> str:
        if isinstance(message, Notice):
            link = f'<p><a href="{escape(message.link)}">Open in the diary</a></p>' if message.link else ""
            return f"<pre>{escape(message.text)}</pre>{link}"
        return message.html

    def build(self, message: Message) -> bytes:
        """The message as MIME bytes: plain text and HTML alternatives, base64 so any text is safe.

        Written out directly: the email package's header objects cost several times more than
        the SMTP exchange itself, and these headers are fixed ASCII. An address that is not
        ASCII takes the email package's path instead.
        """
        if not (message.to_email.isascii() and self.sender.isascii() and message.subject.isascii()):
            return self._build_with_email_package(message)
        boundary = uuid.uuid4().hex
        text = base64.encodebytes(message.text.encode("utf-8")).decode("ascii")
        html = base64.encodebytes(self.html(message).encode("utf-8")).decode("ascii")
        return (
            (
                f"From: {self.sender}\r\nTo: {message.to_email}\r\nSubject: {message.subject}\r\n"
                f"Date: {formatdate(usegmt=True)}\r\nMessage-ID: <{uuid.uuid4().hex}@diary>\r\n"
                f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
                f'--{boundary}\r\nContent-Type: text/plain; charset="utf-8"\r\n'
                f"Content-Transfer-Encoding: base64\r\n\r\n{text}\r\n"
                f'--{boundary}\r\nContent-Type: text/html; charset="utf-8"\r\n'
                f"Content-Transfer-Encoding: base64\r\n\r\n{html}\r\n--{boundary}--\r\n"
            )
            .replace("\n", "\r\n")
            .replace("\r\r\n", "\r\n")
            .encode("ascii")
        )

    def _build_with_email_package(self, message: Message) -> bytes:
        email = EmailMessage()
        email["From"], email["To"], email["Subject"] = self.sender, message.to_email, message.subject
        email["Date"], email["Message-ID"] = formatdate(usegmt=True), make_msgid(domain="diary")
        email.set_content(message.text)
        email.add_alternative(self.html(message), subtype="html")
        return email.as_bytes()

    def send(self, message: Message) -> None:
        if not message.to_email:
            raise Undeliverable("no email address")
        if not message.to_email.isascii() or any(c in message.to_email for c in "\r\n ,;<>"):
            # Enrolment refuses such addresses; one stored before that rule is never sent.
            raise Undeliverable(
                f"address cannot be sent without SMTPUTF8 or has forbidden characters: {message.to_email!r}"
            )
        if not self.host:
            raise NoChannel("no SMTP server configured (DIARY_SMTP_HOST)")
        data = self.build(message)
        for attempt in (1, 2):
            try:
                if self.connection is None:
                    self.connection = self._connect()
                self.connection.sendmail(self.sender, [message.to_email], data)
                return
            except smtplib.SMTPServerDisconnected as error:
                self.connection = None
                if attempt == 2:
                    raise DeliveryFailed(f"SMTP server disconnected: {error}") from error
            except smtplib.SMTPRecipientsRefused as error:
                self.close()
                replies = "; ".join(
                    f"{address}: {code} {_said(reply)}" for address, (code, reply) in error.recipients.items()
                )
                raise DeliveryFailed(f"SMTP refused the recipient: {replies}") from error
            except smtplib.SMTPResponseException as error:
                self.close()
                raise DeliveryFailed(f"SMTP answered {error.smtp_code} {_said(error.smtp_error)}") from error
            except (smtplib.SMTPException, OSError) as error:
                self.close()
                raise DeliveryFailed(f"SMTP: {error}") from error

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self.connection = None


def _said(reply) -> str:
    """An SMTP server's reply text, kept as the server wrote it."""
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


class PushChannel:
    """Web push with VAPID (pywebpush). 404 and 410 mean the subscription is gone for good."""

    def __init__(self, config):
        self.private_key = config.get("VAPID_PRIVATE_KEY") or ""
        self.subject = config.get("VAPID_SUBJECT") or "mailto:diary@localhost"
        self.timeout = float(config.get("PUSH_TIMEOUT") or 10)

    def send(self, subscription, message: Message) -> None:
        from pywebpush import WebPushException, webpush

        if not self.private_key:
            raise NoChannel("no web push (VAPID) key configured (run 'flask --app wsgi diary init')")
        payload = json.dumps({"title": message.subject, "body": message.push_body, "url": message.link})
        try:
            webpush(
                subscription_info={
                    "endpoint": subscription.endpoint,
                    "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
                },
                data=payload,
                vapid_private_key=self.private_key,
                vapid_claims={"sub": self.subject},
                timeout=self.timeout,
                ttl=3600,
            )
        except WebPushException as error:
            status = getattr(error.response, "status_code", None)
            if status in (404, 410):
                raise SubscriptionGone(f"push service answered {status}") from error
            raise DeliveryFailed(f"push service: {status or error}") from error
        except Exception as error:  # connection refused, timeouts: worth a retry
            raise DeliveryFailed(f"push: {error}") from error
