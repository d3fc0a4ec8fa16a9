"""Outgoing e-mail over SMTP (settings `smtp_host`, `smtp_port`, `smtp_from`, `smtp_ssl`, `smtp_starttls`, ...).

`send` is fire-and-forget (sign-up and password mail); `deliver` raises MailNotSent so the notification queue
can retry later.

Without an SMTP server, mail is written to `data_dir/outbox` as .eml files readable only by the owner, so a
development install can still follow a verification or reset link.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from adstack.core.private_files import create_private
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow

log = logging.getLogger("adstack.mail")


def build_message(settings: Settings, *, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = make_msgid(domain="adstack")
    message.set_content(body)
    return message


class MailNotSent(Exception):
    """The SMTP server could not be reached or refused the message; the caller may try again later."""


def send(settings: Settings, *, to: str, subject: str, body: str) -> None:
    """Send one message. Failures are logged, not raised: callers answer the same whether mail went or not."""
    try:
        deliver(settings, to=to, subject=subject, body=body)
    except MailNotSent:
        # The recipient is not logged in full: a log should not become a list of who signed up.
        log.exception("mail to %s... not sent: %s", to[:3], subject)


def deliver(settings: Settings, *, to: str, subject: str, body: str) -> None:
    """Send one message or raise MailNotSent; without `smtp_host` it goes to the outbox directory."""
    message = build_message(settings, to=to, subject=subject, body=body)
    if not settings.smtp_host:
        _write_to_outbox(settings, message)
        return
    try:
        smtp: smtplib.SMTP
        if settings.smtp_ssl:
            smtp = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_s,
                                    context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_s)
        with smtp:
            if settings.smtp_starttls and not settings.smtp_ssl:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailNotSent(f"{type(exc).__name__}: {exc}"[:300]) from exc


def _write_to_outbox(settings: Settings, message: EmailMessage) -> None:
    outbox = settings.data_dir / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / f"{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.eml"
    with create_private(path) as out:
        out.write(message.as_bytes())
    log.warning("no smtp_host set: mail written to %s", path)


@dataclass(frozen=True)
class OutgoingMail:
    """A message a service wants sent; the web layer sends it after answering."""

    to: str
    subject: str
    body: str


def send_mail(settings: Settings, mail: OutgoingMail) -> None:
    send(settings, to=mail.to, subject=mail.subject, body=mail.body)
