"""OpenPGP for mail with a patient who keeps a key: her public key read and checked, a
message encrypted to it (and signed with the practice's key, when it has one) as PGP/MIME
(RFC 3156), and her PGP/MIME mail to the practice's key decrypted with its signature
checked against her key; Sequoia-PGP (pysequoia) does every piece of cryptography.

The whole MIME body (text, HTML, attachments) is encrypted; the headers that route and
thread the mail (From, To, Date, Message-ID, In-Reply-To, References, Subject) stay outside,
as RFC 3156 leaves them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.parser import BytesHeaderParser, BytesParser
from email.policy import SMTP

import pysequoia

__all__ = [
    "SIGNED",
    "UNDECRYPTABLE",
    "UNSIGNED",
    "KeyProblem",
    "PracticeKey",
    "PublicKey",
    "decrypt_mime",
    "encrypt_mime",
    "is_pgp_mime",
    "read_practice_key",
    "read_public_key",
]

#: What became of a PGP/MIME mail from the patient (the audit's `openpgp`).
SIGNED = "signed"  # decrypted, and signed with her key on file
UNSIGNED = "unsigned"  # decrypted; no signature of her key on file (none, or another's)
UNDECRYPTABLE = "undecryptable"  # not to the practice's key, or broken: relayed as it came

#: The headers kept on the outside of an encrypted message.
OUTER_HEADERS = (
    "From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Auto-Submitted",
)  # fmt: skip
MAX_KEY_BYTES = 256 * 1024


class KeyProblem(ValueError):
    """The bytes are not a usable key; the text says why in one line, `code` names the
    reason for texts in the reader's language ("not_a_key", "secret_key", "revoked",
    "cannot_encrypt")."""

    def __init__(self, message: str, code: str = "not_a_key") -> None:
        super().__init__(message)
        self.code = code


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
        raise KeyProblem("this is a secret key: send only the public key", "secret_key")
    if cert.is_revoked:
        raise KeyProblem("this key is revoked", "revoked")
    try:
        # A key that cannot be encrypted to is found now, not when a mail must leave.
        pysequoia.encrypt(b"probe", recipients=[cert])
    except Exception as exc:
        raise KeyProblem(
            "this key has no usable encryption subkey (expired?)", "cannot_encrypt"
        ) from exc
    return PublicKey(str(cert.fingerprint).lower(), str(cert).encode("ascii"))


@dataclass(frozen=True, slots=True)
class PracticeKey:
    """The practice's own OpenPGP key (with its secret parts): signs mail to patients and
    opens theirs."""

    tsk: pysequoia.Tsk = field(repr=False)

    @property
    def public(self) -> PublicKey:
        cert = self.tsk.extract_certificate()
        return PublicKey(str(cert.fingerprint).lower(), str(cert).encode("ascii"))


def read_practice_key(data: bytes) -> PracticeKey:
    """The practice's secret key (unprotected: the file's permissions guard it)."""
    try:
        return PracticeKey(pysequoia.Tsk.from_bytes(data))
    except Exception as exc:
        raise KeyProblem("not an OpenPGP secret key without a passphrase") from exc


def is_pgp_mime(raw: bytes) -> bool:
    """The message is PGP/MIME encrypted (RFC 3156 section 4), by its headers."""
    headers = BytesHeaderParser(policy=policy.default).parsebytes(raw)
    return (
        headers.get_content_type() == "multipart/encrypted"
        and str(headers.get_param("protocol", "")).lower() == "application/pgp-encrypted"
    )


def decrypt_mime(raw: bytes, practice: PracticeKey, sender: PublicKey | None) -> tuple[bytes, str]:
    """Her PGP/MIME message opened: the outer headers with the decrypted entity in place of
    the encrypted body, and SIGNED or UNSIGNED; `(raw, UNDECRYPTABLE)` when it cannot be."""
    outer = BytesParser(policy=policy.default).parsebytes(raw)
    parts = list(outer.iter_parts()) if outer.is_multipart() else []
    payload = parts[1].get_payload(decode=True) if len(parts) == 2 else None
    if not isinstance(payload, bytes):
        return raw, UNDECRYPTABLE
    certs = [] if sender is None else [pysequoia.Cert.from_bytes(sender.armored)]
    status = SIGNED
    try:
        opened = pysequoia.decrypt(
            payload, decryptor=practice.tsk.decryptor(), store=lambda _: certs
        )
    except Exception:
        # No good signature of her key (or none at all): it may still be for our key.
        status = UNSIGNED
        try:
            opened = pysequoia.decrypt(payload, decryptor=practice.tsk.decryptor())
        except Exception:
            return raw, UNDECRYPTABLE
    if status == SIGNED and not opened.valid_sigs:
        status = UNSIGNED
    if opened.bytes is None:
        return raw, UNDECRYPTABLE
    return _outer_headers(raw) + bytes(opened.bytes).lstrip(b"\r\n"), status


def _outer_headers(raw: bytes) -> bytes:
    """The raw header block without its Content-* and MIME-Version fields (the decrypted
    entity brings its own), ending in CRLF."""
    end = raw.find(b"\r\n\r\n")
    block = raw[: end + 2] if end >= 0 else raw
    kept: list[bytes] = []
    skipping = False
    for line in block.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        skipping = name.startswith(b"content-") or name == b"mime-version"
        if not skipping:
            kept.append(line)
    return b"".join(line + b"\r\n" for line in kept)


def encrypt_mime(msg: EmailMessage, key: PublicKey, signer: PracticeKey | None = None) -> bytes:
    """`msg` as a PGP/MIME message encrypted to `key` (and signed by `signer`), as SMTP
    carries it (CRLF)."""
    inner = EmailMessage()
    for name, value in msg.items():
        if name.lower().startswith("content-"):
            inner[name] = value
    inner.set_payload(msg.get_payload())
    plaintext = inner.as_bytes(policy=SMTP)
    cert = pysequoia.Cert.from_bytes(key.armored)
    sign = None if signer is None else signer.tsk.signer()
    ciphertext = pysequoia.encrypt(plaintext, recipients=[cert], signer=sign)
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
