"""OpenPGP for mail to a patient who keeps a key: her public key read and checked, and a
message encrypted to it as PGP/MIME (RFC 3156), with Sequoia-PGP (pysequoia) doing every
piece of cryptography.

The whole MIME body (text, HTML, attachments) is encrypted; the headers that route and
thread the mail (From, To, Date, Message-ID, In-Reply-To, References, Subject) stay outside,
as RFC 3156 leaves them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.policy import SMTP

import pysequoia

__all__ = ["KeyProblem", "PublicKey", "encrypt_mime", "read_public_key"]

#: The headers kept on the outside of an encrypted message.
OUTER_HEADERS = (
    "From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Auto-Submitted",
)  # fmt: skip
MAX_KEY_BYTES = 256 * 1024


class KeyProblem(ValueError):
    """The bytes are not a usable public key; the text says why, in one line."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    fingerprint: str
    #: The certificate, ASCII-armored, as stored.
    armored: bytes = field(repr=False)

    @property
    def spaced(self) -> str:
        """The fingerprint in groups of four, as people read it out to compare."""
        upper = self.fingerprint.upper()
        return " ".join(upper[i : i + 4] for i in range(0, len(upper), 4))


def read_public_key(data: bytes) -> PublicKey:
    """The public key in `data` (armored or binary); a secret key or a revoked one is refused."""
    if not data.strip() or len(data) > MAX_KEY_BYTES:
        raise KeyProblem("not an OpenPGP public key (empty or too large)")
    try:
        cert = pysequoia.Cert.from_bytes(data)
    except Exception as exc:  # pysequoia raises plain exceptions for any parse failure
        raise KeyProblem("not an OpenPGP public key") from exc
    if cert.has_secret_keys:
        raise KeyProblem("this is a secret key: send only the public key")
    if cert.is_revoked:
        raise KeyProblem("this key is revoked")
    try:
        # A key that cannot be encrypted to is found now, not when a mail must leave.
        pysequoia.encrypt(b"probe", recipients=[cert])
    except Exception as exc:
        raise KeyProblem("this key has no usable encryption subkey (expired?)") from exc
    return PublicKey(str(cert.fingerprint).lower(), str(cert).encode("ascii"))


def encrypt_mime(msg: EmailMessage, key: PublicKey) -> bytes:
    """`msg` as a PGP/MIME message encrypted to `key`, as SMTP carries it (CRLF)."""
    inner = EmailMessage()
    for name, value in msg.items():
        if name.lower().startswith("content-"):
            inner[name] = value
    inner.set_payload(msg.get_payload())
    plaintext = inner.as_bytes(policy=SMTP)
    cert = pysequoia.Cert.from_bytes(key.armored)
    ciphertext = pysequoia.encrypt(plaintext, recipients=[cert])
    version = MIMEApplication(b"Version: 1\r\n", "pgp-encrypted", _encoder=_seven_bit)
    version["Content-Description"] = "PGP/MIME version identification"
    body = MIMEApplication(ciphertext, "octet-stream", _encoder=_seven_bit, name="encrypted.asc")
    body["Content-Description"] = "OpenPGP encrypted message"
    body["Content-Disposition"] = 'inline; filename="encrypted.asc"'
    outer = MIMEMultipart("encrypted", protocol="application/pgp-encrypted")
    for name in OUTER_HEADERS:
        value = msg.get(name)
        if value is not None:
            outer[name] = str(value)
    outer.attach(version)
    outer.attach(body)
    return outer.as_bytes(policy=SMTP)


def _seven_bit(part: MIMEApplication) -> None:
    # Armored text is 7-bit already; base64 on top would only hide it from readers.
    part["Content-Transfer-Encoding"] = "7bit"
