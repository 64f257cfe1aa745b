"""Hand a composed email to an SMTP server, or to an .eml file when none is configured.

`sendmail` may accept a message for some recipients and refuse others without raising,
so every send reports per recipient; a connection that failed once is not retried within
the same run, so a dead server costs one timeout, not one per recipient.
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
from email import policy
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path

from crawler.config import AlertSettings


class DeliveryError(Exception):
    """The message did not reach the server for this recipient; it will be retried."""


class SmtpMailer:
    """One SMTP session per delivery run (STARTTLS, SSL or plain), opened on first use."""

    def __init__(self, settings: AlertSettings):
        self.settings = settings
        self.client: smtplib.SMTP | None = None
        self.broken: str | None = None  # why connecting failed; later sends fail at once

    @property
    def where(self) -> str:
        security = {"starttls": "with STARTTLS", "ssl": "over SSL/TLS"}.get(self.settings.tls, "without TLS")
        return f"smtp://{self.settings.smtp_host}:{self.settings.smtp_port} {security}"

    def __enter__(self) -> SmtpMailer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, message: EmailMessage, to: str) -> str:
        """Send to one address; raise DeliveryError unless the server accepted it for `to`."""
        client = self._connect()
        sender = parseaddr(self.settings.sender)[1] or self.settings.sender
        try:
            refused = client.sendmail(sender, [to], message.as_bytes(policy=policy.SMTP))
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(_refusal(exc.recipients.get(to))) from None
        except smtplib.SMTPSenderRefused as exc:
            raise DeliveryError(f"sender {sender} refused: {exc.smtp_code} {_text(exc.smtp_error)}") from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"server answered {exc.smtp_code} {_text(exc.smtp_error)}") from None
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise DeliveryError(f"connection lost: {_describe(exc)}") from None
        if to in refused:
            raise DeliveryError(_refusal(refused[to]))
        return self.where

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()

    def _connect(self) -> smtplib.SMTP:
        if self.client is not None:
            return self.client
        if self.broken:
            raise DeliveryError(self.broken)
        s = self.settings
        try:
            if s.tls == "ssl":
                client: smtplib.SMTP = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=s.timeout, context=ssl.create_default_context())
            else:
                client = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout)
            try:
                client.ehlo()
                if s.tls == "starttls":
                    client.starttls(context=ssl.create_default_context())
                    client.ehlo()
                if s.smtp_user:
                    password = os.environ.get(s.password_env)
                    if password is None:
                        raise DeliveryError(f"smtp_user is set but the environment variable {s.password_env} is not")
                    client.login(s.smtp_user, password)
            except BaseException:
                client.close()
                raise
        except DeliveryError as exc:
            self.broken = str(exc)
            raise
        except (smtplib.SMTPException, OSError) as exc:
            self.broken = f"cannot reach {self.where}: {_describe(exc)}"
            raise DeliveryError(self.broken) from None
        self.client = client
        return client

    def _drop(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except OSError:
                pass
        self.client = None


class EmlMailer:
    """No SMTP server configured (the demo): each email becomes an .eml file in a folder."""

    def __init__(self, folder: Path):
        self.folder = folder

    @property
    def where(self) -> str:
        return str(self.folder)

    def __enter__(self) -> EmlMailer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, message: EmailMessage, to: str) -> str:
        """Write the message atomically; the name is stable per Message-ID, so a resend overwrites."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            ident = re.sub(r"[^A-Za-z0-9]+", "", str(message["Message-ID"]).split("@")[0])[-16:]
            path = self.folder / f"{_slug(to)}-{ident}.eml"
            tmp = path.with_suffix(".eml.tmp")
            tmp.write_bytes(message.as_bytes(policy=policy.SMTP))
            os.replace(tmp, path)
        except OSError as exc:
            raise DeliveryError(f"cannot write to {self.folder}: {exc}") from None
        return str(path)

    def close(self) -> None:
        pass


def _slug(address: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._-]+", "_", address)[:80]


def _refusal(answer: tuple[int, bytes] | None) -> str:
    if not answer:
        return "recipient refused"
    code, text = answer
    return f"recipient refused: {code} {_text(text)}"


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value or "")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
