"""The configuration: one YAML file, validated by pydantic models.

`load_config(path)` reads the file, resolves `${ENV}` and `file:` secrets, refuses
placeholders from config.example.yaml and validates every section. Anything wrong is a
`ConfigError` whose text is one line: `<file>: <key.path>: <what is wrong>`.

Tests of other modules build a valid configuration with `minimal_config(**overrides)`.

Each YAML section has its own module (`homeserver`, `bot`, `database`, `practice`,
`policies`, `smtp`, `outbound_email`, `http`, `jitsi`, `audit`, `synapse_admin`,
`logging`); `root` composes them into `Config` and checks them together. `values` holds
the value types they share, `secrets` the `${ENV}` / `file:` references and admin
tokens, `errors` and `problems` the error reporting, `loading` the entry points. Import
from `bridge.config`: every name below is re-exported here.
"""

from bridge.config.audit import Audit
from bridge.config.bot import Bot, Witness
from bridge.config.database import Database
from bridge.config.errors import ConfigError, ConfigProblem, FieldProblem, UnknownPolicyError
from bridge.config.homeserver import Homeserver
from bridge.config.http import Http
from bridge.config.jitsi import Jitsi, JitsiJwt
from bridge.config.loading import load_config, parse_config
from bridge.config.logging import LoggingSettings
from bridge.config.minimal import (
    MINIMAL_ADMIN_TOKEN,
    MINIMAL_CONFIG,
    minimal_config,
    minimal_config_dict,
)
from bridge.config.outbound_email import OutboundEmail
from bridge.config.policies import Policy
from bridge.config.practice import DayHours, Practice, PublicHolidays, WorkingHours, WorkRange
from bridge.config.root import Config
from bridge.config.secrets import (
    KeyPath,
    format_path,
    hash_token,
    is_token_hash,
    resolve_references,
    verify_token,
)
from bridge.config.section import Section
from bridge.config.smtp import InboundSmtp
from bridge.config.synapse_admin import SynapseAdmin
from bridge.config.values import (
    ConfigPath,
    Duration,
    Key32,
    MatrixUserId,
    OptionalDuration,
    parse_duration,
)

__all__ = [
    "MINIMAL_ADMIN_TOKEN",
    "MINIMAL_CONFIG",
    "Audit",
    "Bot",
    "Config",
    "ConfigError",
    "ConfigPath",
    "ConfigProblem",
    "Database",
    "DayHours",
    "Duration",
    "FieldProblem",
    "Homeserver",
    "Http",
    "InboundSmtp",
    "Jitsi",
    "JitsiJwt",
    "Key32",
    "KeyPath",
    "LoggingSettings",
    "MatrixUserId",
    "OptionalDuration",
    "OutboundEmail",
    "Policy",
    "Practice",
    "PublicHolidays",
    "Section",
    "SynapseAdmin",
    "UnknownPolicyError",
    "Witness",
    "WorkRange",
    "WorkingHours",
    "format_path",
    "hash_token",
    "is_token_hash",
    "load_config",
    "minimal_config",
    "minimal_config_dict",
    "parse_config",
    "parse_duration",
    "resolve_references",
    "verify_token",
]
