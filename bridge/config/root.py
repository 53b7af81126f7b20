"""The root of the configuration: `Config` composes the sections and checks them together.

Each section validates itself; what needs two sections (the bot's server and the
homeserver, a policy's channels and outbound e-mail, working-time clocks and opening
hours) is checked here. `data_dir` is the one top-level value that is not a section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from bridge.config.audit import Audit
from bridge.config.bot import Bot
from bridge.config.database import Database
from bridge.config.errors import FieldProblem, UnknownPolicyError
from bridge.config.homeserver import Homeserver
from bridge.config.http import Http
from bridge.config.jitsi import Jitsi
from bridge.config.logging import LoggingSettings
from bridge.config.outbound_email import OutboundEmail
from bridge.config.pairs import Pairs
from bridge.config.policies import Policy
from bridge.config.practice import Practice
from bridge.config.section import Section
from bridge.config.smtp import InboundSmtp
from bridge.config.synapse_admin import SynapseAdmin
from bridge.config.values import NAME_RE, USER_ID_RE, ConfigPath


def _default_policies() -> dict[str, Policy]:
    return {"default": Policy()}


class Config(Section):
    """The whole configuration. Build it with `load_config`, `parse_config` or `minimal_config`."""

    homeserver: Homeserver
    bot: Bot
    data_dir: ConfigPath = Field(default=Path("data"), validate_default=True)
    #: Templates that replace the shipped ones with the same relative path; None: none.
    templates_dir: ConfigPath | None = None
    database: Database = Database()
    practice: Practice = Practice()
    policies: dict[str, Policy] = Field(default_factory=_default_policies)
    smtp: InboundSmtp = InboundSmtp()
    outbound_email: OutboundEmail = OutboundEmail()
    http: Http = Http()
    jitsi: Jitsi = Jitsi()
    pairs: Pairs = Pairs()
    audit: Audit
    synapse_admin: SynapseAdmin = SynapseAdmin()
    logging: LoggingSettings = LoggingSettings()

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in ("database", "practice", "smtp", "outbound_email", "http", "jitsi"):
            # An empty section (`smtp:` with nothing under it) means "all defaults".
            if key in data and data[key] is None:
                data[key] = {}
        for key in ("synapse_admin", "logging", "pairs"):
            if key in data and data[key] is None:
                data[key] = {}
        if "policies" in data and data["policies"] is None:
            del data["policies"]
        # The server name is usually the part of the bot's user id after the colon.
        homeserver, bot = data.get("homeserver"), data.get("bot")
        if isinstance(homeserver, dict) and "server_name" not in homeserver:
            user_id = bot.get("user_id") if isinstance(bot, dict) else None
            if isinstance(user_id, str) and USER_ID_RE.fullmatch(user_id):
                data["homeserver"] = {**homeserver, "server_name": user_id.split(":", 1)[1]}
        return data

    @field_validator("policies")
    @classmethod
    def _policy_names(cls, value: dict[str, Policy]) -> dict[str, Policy]:
        for name in value:
            if not NAME_RE.fullmatch(name):
                raise FieldProblem(
                    (name,), "policy names are 1-64 letters, digits, '-', '_' or '.'"
                )
        if "default" not in value:
            raise ValueError("a policy named 'default' is required")
        return value

    @field_validator("templates_dir")
    @classmethod
    def _templates_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(
                f"{value} is not a directory; it holds the templates that replace the shipped "
                "ones (messages/NAME.txt.j2, email/NAME.txt.j2), or null for none"
            )
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        bot_server = self.bot.user_id.split(":", 1)[1]
        if bot_server != self.homeserver.server_name:
            raise FieldProblem(
                "bot.user_id",
                f"is on server {bot_server!r}, not homeserver.server_name "
                f"{self.homeserver.server_name!r}",
            )
        for name, policy in self.policies.items():
            if "email" in policy.channels and not self.outbound_email.enabled:
                raise FieldProblem(
                    ("policies", name, "channels"),
                    "'email' needs outbound_email.enabled: true",
                )
            if policy.window_clock == "working" and not self.practice.working_hours.any_open:
                raise FieldProblem(
                    ("practice", "working_hours"),
                    f"has no opening hours, but policy {name!r} counts working time",
                )
        if self.http.enabled and not self.http.admin_tokens:
            # Every request but /health would be refused: an API nobody can use.
            raise FieldProblem(
                ("http", "admin_tokens"),
                "is empty, so the admin API, dashboard and /metrics refuse every request; "
                "add the hash from `confidant hash-token --generate`, or set http.enabled: false",
            )
        if self.outbound_email.notify_unread_after and not self.outbound_email.enabled:
            raise FieldProblem(
                ("outbound_email", "notify_unread_after"), "needs outbound_email.enabled: true"
            )
        return self

    def policy(self, name: str) -> Policy:
        """The policy called `name`; raises `UnknownPolicyError` naming the known ones."""
        try:
            return self.policies[name]
        except KeyError:
            known = ", ".join(sorted(self.policies))
            raise UnknownPolicyError(
                f"no policy named {name!r} in the config (policies: {known})"
            ) from None

    @property
    def database_url(self) -> str:
        """The URL to give `open_database`: the configured one or `sqlite://<data_dir>/...`."""
        return self.database.url or "sqlite://" + str(self.data_dir / "confidant.db")

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None when the database is PostgreSQL."""
        url = self.database_url
        return Path(url.removeprefix("sqlite://")) if url.startswith("sqlite://") else None

    @property
    def crypto_store_dir(self) -> Path:
        """Where nio keeps the bot's E2EE keys (pickled with bot.pickle_key)."""
        return self.data_dir / "crypto"

    @property
    def media_cache_dir(self) -> Path:
        """Where downloaded and converted media wait (deleted after use)."""
        return self.data_dir / "media"

    @property
    def state_dir(self) -> Path:
        """Where the bot keeps its session (device id, sync token, cross-signing seeds)."""
        return self.data_dir / "state"

    def ensure_data_dirs(self) -> None:
        """Create data_dir and its subdirectories, readable by the service user only."""
        for path in (self.data_dir, self.crypto_store_dir, self.media_cache_dir, self.state_dir):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
