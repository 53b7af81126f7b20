"""`smtp.replies:` the therapist's messages sent on by e-mail to a patient who agreed to it.

The mail leaves through `outbound_email`'s relay from the pair's own address
(pair-TOKEN@`smtp.inbound_domain`), so her reply comes back to the same pair.
"""

from __future__ import annotations

import os

from pydantic import model_validator

from bridge.config.errors import FieldProblem
from bridge.config.section import Section
from bridge.config.values import ConfigPath


class EmailReplies(Section):
    """Answers by e-mail: off unless enabled, and then only with the patient's consent."""

    enabled: bool = False
    #: The DKIM selector of the inbound domain's key (DNS: SELECTOR._domainkey.DOMAIN).
    dkim_selector: str | None = None
    #: The DKIM private key (PEM, RSA) that signs every mail; null sends unsigned.
    dkim_key: ConfigPath | None = None
    #: Nothing leaves in clear: a patient without an OpenPGP key on file gets no mail.
    require_encryption: bool = False
    #: The practice's OpenPGP secret key (no passphrase; keep the file private): it signs
    #: encrypted mail to patients and opens their PGP/MIME mail to the pair addresses.
    openpgp_key: ConfigPath | None = None

    @model_validator(mode="after")
    def _consistent(self) -> EmailReplies:
        if (self.dkim_selector is None) != (self.dkim_key is None):
            missing = "dkim_key" if self.dkim_key is None else "dkim_selector"
            raise FieldProblem(missing, "dkim_selector and dkim_key must be set together")
        for key in ("dkim_key", "openpgp_key"):
            path = getattr(self, key)
            if self.enabled and path is not None and not os.access(path, os.R_OK):
                raise FieldProblem(key, f"cannot read {path}")
        return self
