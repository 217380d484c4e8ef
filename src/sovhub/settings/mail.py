"""Settings of outgoing e-mail (``[mail]``): the SMTP server notices are sent through."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

__all__ = ["MailSettings"]


class MailSettings(BaseModel):
    """Outgoing e-mail (docs/credits.md, "Notices by e-mail"): off until `host` is set."""

    host: str | None = Field(
        None, description="SMTP server notices are sent through; unset: no e-mail is sent at all."
    )
    port: int = Field(587, ge=1, le=65535, description="SMTP port (587 for STARTTLS, 465 for SSL).")
    security: Literal["starttls", "ssl", "none"] = Field(
        "starttls", description="starttls: plain connection upgraded to TLS (refused if the server cannot); "
        "ssl: TLS from the first byte; none: no encryption (only for a relay on the same host; no login)."
    )
    ca_file: str | None = Field(
        None, description="PEM file of the CA that signed the server's certificate (relative to the data dir); "
        "the system's CAs when unset. The server's name is always checked."
    )
    username: str | None = Field(None, description="SMTP login; none: no AUTH.")
    password: str | None = Field(
        None, description="SMTP password: give it by reference, SOVHUB_MAIL__PASSWORD from a secret store, or "
        "password_file; never in sovhub.toml."
    )
    password_file: str | None = Field(
        None, description="File holding the SMTP password (relative to the data dir; e.g. a mounted secret)."
    )
    from_address: str | None = Field(None, description="The From: address (required with host).")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Seconds to connect and for each SMTP reply.")
    max_attempts: int = Field(
        6, ge=1, le=50, description="Tries per notice before giving up (each failure logged)."
    )
    retry_base_s: float = Field(
        30.0, gt=0, description="Seconds before the first retry; each later one waits twice as long."
    )
    max_age_s: float = Field(
        3 * 86400.0, gt=0, description="Notices older than this are not mailed (e.g. those made before mail "
        "was configured); they stay in the web app."
    )
    poll_s: float = Field(5.0, gt=0, description="Seconds between looks for notices to mail.")

    @model_validator(mode="after")
    def _consistent(self) -> MailSettings:
        if self.host is None:
            return self
        if not self.from_address or "@" not in self.from_address:
            raise ValueError("mail.from_address (an e-mail address) is required with mail.host")
        if self.password is not None and self.password_file is not None:
            raise ValueError("give mail.password or mail.password_file, not both")
        has_secret = self.password is not None or self.password_file is not None
        if has_secret and self.username is None:
            raise ValueError("mail.password needs mail.username")
        if self.username is not None and self.security == "none":
            raise ValueError("mail.security = 'none' would send the SMTP login in clear: use starttls or ssl")
        return self
