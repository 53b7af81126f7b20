"""Sender authentication: is the From one of the pair's addresses, and really from there?

Two modes (config `smtp.sender_auth`):

- ``direct``: the bridge receives mail from the internet and checks DKIM (dkimpy), SPF
  (pyspf) and DMARC alignment itself. Alignment is relaxed unless the domain's DMARC
  record asks for strict; organisational domains come from the Public Suffix List, so
  ``a.example.co.uk`` and ``b.example.co.uk`` align but ``x.co.uk`` and ``y.co.uk`` do not.
  An aligned pass is required even when the domain publishes no DMARC record or
  ``p=none``: a pair's room only takes mail whose From is proven.
- ``behind_mta``: the practice's MTA has done the checks; only its own
  ``Authentication-Results`` (the configured authserv-id, topmost block) are trusted.
  Any other such header came from the sender's side and is ignored.

All DNS goes through a `Resolver`, so tests (and air-gapped installs) can supply records.
Results carry reason codes and SMTP replies, never message content. The checks block
(DNS, RSA), so callers run `check_sender` in a worker thread.
"""

from __future__ import annotations

import enum
import functools
import logging
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any, Protocol

import authres
import dkim
import spf
from publicsuffixlist import PublicSuffixList

from bridge.email.parse import ParsedEmail, normalise_address

__all__ = [
    "AuthMode",
    "AuthPolicy",
    "AuthResult",
    "DnsPythonResolver",
    "DnsTempError",
    "EnvelopeFacts",
    "Resolver",
    "StaticResolver",
    "check_sender",
    "organisational_domain",
    "sender_allowed",
]

_MAX_DKIM_SIGNATURES = 5

# dkimpy logs signatures and header values at debug level; keep them out of our logs.
_DKIM_LOG = logging.Logger("bridge.email.dkim", level=logging.CRITICAL + 1)
_DKIM_LOG.propagate = False


class AuthMode(enum.StrEnum):
    """Where sender authentication happens."""

    DIRECT = "direct"
    BEHIND_MTA = "behind_mta"


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """How senders are authenticated; `authserv_id` is required for `behind_mta`."""

    mode: AuthMode = AuthMode.DIRECT
    authserv_id: str | None = None

    def __post_init__(self) -> None:
        if self.mode is AuthMode.BEHIND_MTA and not self.authserv_id:
            raise ValueError("behind_mta needs the MTA's authserv_id")


@dataclass(frozen=True, slots=True)
class EnvelopeFacts:
    """What the SMTP session knows about the sending side."""

    client_ip: str
    helo: str
    #: The envelope sender (MAIL FROM), "" for the null sender.
    mail_from: str


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The verdict: accept, reject or defer, with a reason code safe to log and store."""

    ok: bool
    #: pass | sender_not_allowed | dmarc_fail | spf_fail | dkim_unaligned | dkim_none |
    #: no_trusted_results | dns_temperror
    reason: str
    smtp_code: int
    smtp_status: str
    text: str
    #: How the pass was obtained: dkim | spf | mta | "" when not passed.
    method: str = ""
    dkim_pass_domains: tuple[str, ...] = ()
    spf_result: str = "none"
    dmarc_policy: str | None = None

    @property
    def smtp_reply(self) -> str:
        """The full SMTP reply line for this verdict."""
        return f"{self.smtp_code} {self.smtp_status} {self.text}"


def _passed(method: str, **extra: Any) -> AuthResult:
    return AuthResult(True, "pass", 250, "2.0.0", "Ok", method=method, **extra)


def _rejected(reason: str, **extra: Any) -> AuthResult:
    code, status, text = _REJECTIONS[reason]
    return AuthResult(False, reason, code, status, text, **extra)


# RFC 7372 enhanced status codes for e-mail authentication.
_REJECTIONS: dict[str, tuple[int, str, str]] = {
    "sender_not_allowed": (550, "5.7.1", "Sender address is not allowed for this recipient"),
    "dmarc_fail": (
        550,
        "5.7.26",
        "Sender domain failed DMARC: no aligned DKIM signature or SPF pass",
    ),
    "spf_fail": (550, "5.7.23", "SPF validation failed for the sending server"),
    "dkim_unaligned": (
        550,
        "5.7.22",
        "No valid DKIM signature from the sender's domain (author-matched) found",
    ),
    "dkim_none": (
        550,
        "5.7.20",
        "No passing DKIM signature found and SPF does not align with the sender",
    ),
    "no_trusted_results": (
        550,
        "5.7.26",
        "Sender could not be authenticated: no results from the trusted mail server",
    ),
    "dns_temperror": (451, "4.4.3", "Temporary DNS failure authenticating the sender, try later"),
}


# ------------------------------------------------------------------ DNS


class DnsTempError(Exception):
    """A DNS lookup failed in a way that may succeed later (timeout, SERVFAIL)."""


class Resolver(Protocol):
    """Synchronous DNS in the shapes pyspf uses.

    `query(name, "TXT")` returns one list of byte chunks per record; "A"/"AAAA" return
    address strings; "MX" returns (preference, exchange) pairs; "PTR" returns names.
    An empty list means no such data; `DnsTempError` means try again later.
    """

    def query(self, name: str, qtype: str) -> list[Any]:
        """Look up `name`/`qtype` (see the class docstring for the value shapes)."""
        ...


class DnsPythonResolver:
    """The production resolver: the system's DNS through dnspython."""

    def __init__(self, timeout: float = 5.0) -> None:
        import dns.resolver

        self._resolver = dns.resolver.Resolver()
        self._timeout = timeout

    def query(self, name: str, qtype: str) -> list[Any]:
        """Look up `name`/`qtype` through the system resolver."""
        import dns.exception
        import dns.name
        import dns.resolver

        try:
            answer = self._resolver.resolve(name, qtype, lifetime=self._timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.name.EmptyLabel):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise DnsTempError(type(exc).__name__) from exc
        records: list[Any] = []
        for rdata in answer:
            if qtype in ("A", "AAAA"):
                records.append(rdata.address)
            elif qtype == "MX":
                records.append((rdata.preference, rdata.exchange.to_text(True)))
            elif qtype == "PTR":
                records.append(rdata.target.to_text(True))
            elif qtype == "TXT":
                records.append(list(rdata.strings))
        return records


class StaticResolver:
    """A resolver over fixed records, for tests and offline setups.

    `records` maps (name, qtype) to values in the `Resolver` shapes; TXT values may be
    given as plain strings. Names listed in `failing` raise `DnsTempError`.
    """

    def __init__(
        self,
        records: Mapping[tuple[str, str], Sequence[Any]],
        failing: Collection[str] = (),
    ) -> None:
        self._records = {
            (n.lower().rstrip("."), t.upper()): list(v) for (n, t), v in records.items()
        }
        self._failing = {n.lower().rstrip(".") for n in failing}

    def query(self, name: str, qtype: str) -> list[Any]:
        """Return the configured records for `name`/`qtype`."""
        key = (name.lower().rstrip("."), qtype.upper())
        if key[0] in self._failing:
            raise DnsTempError("configured failure")
        values = self._records.get(key, [])
        if key[1] == "TXT":
            return [[v.encode()] if isinstance(v, str) else v for v in values]
        return list(values)


def _txt_records(resolver: Resolver, name: str) -> list[bytes]:
    return [b"".join(chunks) for chunks in resolver.query(name, "TXT")]


def _dkim_dnsfunc(resolver: Resolver) -> Callable[..., bytes]:
    def dnsfunc(name: bytes | str, timeout: int = 5) -> bytes:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        records = _txt_records(resolver, text.rstrip("."))
        return records[0] if records else b""

    return dnsfunc


# ------------------------------------------------------------------ domains


@functools.cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def organisational_domain(domain: str) -> str:
    """Return the registrable domain of `domain` by the Public Suffix List (DMARC's rule)."""
    domain = domain.lower().rstrip(".")
    return _psl().privatesuffix(domain) or domain


def _aligned(domain: str, from_domain: str, strict: bool) -> bool:
    domain = domain.lower().rstrip(".")
    if strict:
        return domain == from_domain
    return organisational_domain(domain) == organisational_domain(from_domain)


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


# ------------------------------------------------------------------ entry point


def sender_allowed(from_address: str, allowed: Collection[str]) -> bool:
    """True when `from_address` equals one of `allowed` after normalisation."""
    wanted = set()
    for address in allowed:
        try:
            wanted.add(normalise_address(address))
        except ValueError:
            continue
    try:
        return normalise_address(from_address) in wanted
    except ValueError:
        return False


def check_sender(
    parsed: ParsedEmail,
    raw: bytes,
    allowed: Collection[str],
    envelope: EnvelopeFacts,
    policy: AuthPolicy,
    resolver: Resolver | None = None,
) -> AuthResult:
    """Decide whether the message's From is allowed for the pair and authenticated."""
    if not sender_allowed(parsed.from_address, allowed):
        return _rejected("sender_not_allowed")
    if policy.mode is AuthMode.BEHIND_MTA:
        assert policy.authserv_id is not None
        return _check_behind_mta(parsed, policy.authserv_id)
    return _check_direct(parsed, raw, envelope, resolver or DnsPythonResolver())


# ------------------------------------------------------------------ direct mode


@dataclass(frozen=True, slots=True)
class _Dmarc:
    policy: str
    strict_dkim: bool
    strict_spf: bool


def _dmarc_record(resolver: Resolver, from_domain: str) -> _Dmarc | None:
    """Find the DMARC record for the From domain, falling back to its organisational domain."""
    names = [from_domain]
    org = organisational_domain(from_domain)
    if org != from_domain:
        names.append(org)
    for name in names:
        records = [
            r
            for r in _txt_records(resolver, f"_dmarc.{name}")
            if re.match(rb"^v\s*=\s*DMARC1\s*(;|$)", r, re.IGNORECASE)
        ]
        if len(records) != 1:
            continue  # none, or several (which RFC 7489 says to treat as none)
        tags: dict[str, str] = {}
        for item in records[0].decode("ascii", "replace").split(";"):
            key, sep, value = item.partition("=")
            if sep:
                tags[key.strip().lower()] = value.strip().lower()
        policy = tags.get("p", "none")
        if name != from_domain:
            policy = tags.get("sp", policy)
        return _Dmarc(policy, tags.get("adkim") == "s", tags.get("aspf") == "s")
    return None


def _dkim_pass_domains(raw: bytes, resolver: Resolver) -> tuple[list[str], bool]:
    """Verify each DKIM signature; return the d= domains that pass and whether DNS failed."""
    count = len(re.findall(rb"(?im)^DKIM-Signature\s*:", raw.split(b"\r\n\r\n", 1)[0]))
    count = min(count, _MAX_DKIM_SIGNATURES)
    domains: list[str] = []
    temp_error = False
    dnsfunc = _dkim_dnsfunc(resolver)
    for index in range(count):
        verifier = dkim.DKIM(raw, logger=_DKIM_LOG)
        try:
            ok = verifier.verify(idx=index, dnsfunc=dnsfunc)
        except DnsTempError:
            temp_error = True
            continue
        except Exception:  # a malformed signature or key is simply not a pass
            continue
        if ok and verifier.domain:
            domains.append(verifier.domain.decode("ascii", "replace").lower())
    return domains, temp_error


class _SpfQuery(spf.query):  # type: ignore[misc]
    """pyspf's query with DNS answered by our resolver instead of its module-level lookup."""

    def __init__(self, resolver: Resolver, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._resolver = resolver

    def dns(
        self, name: str, qtype: str, cnames: Any = None, ignore_void: bool = False
    ) -> list[Any]:
        if not name:
            raise spf.PermError("empty DNS name")
        name = str(name).rstrip(".").lower()
        if not all(0 < len(label) < 64 for label in name.split(".")):
            return []
        key = (name, qtype)
        if key in self.cache:
            return list(self.cache[key])
        try:
            result = list(self._resolver.query(name, qtype))
        except DnsTempError as exc:
            raise spf.TempError(f"DNS {exc}") from exc
        self.cache[key] = result
        if not result and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
        return result


def _spf_result(envelope: EnvelopeFacts, resolver: Resolver) -> tuple[str, str]:
    """Return (result, domain checked) for the envelope sender (or HELO for null senders)."""
    helo = envelope.helo or "unknown"
    sender = envelope.mail_from or f"postmaster@{helo}"
    domain = _domain_of(sender)
    try:
        query = _SpfQuery(resolver, i=envelope.client_ip, s=sender, h=helo, timeout=20)
        result, _code, _explanation = query.check()
    except Exception:  # pyspf raises on malformed input it should have classified
        result = "permerror"
    return str(result), domain


def _check_direct(
    parsed: ParsedEmail, raw: bytes, envelope: EnvelopeFacts, resolver: Resolver
) -> AuthResult:
    from_domain = parsed.from_domain
    try:
        dmarc = _dmarc_record(resolver, from_domain)
        dmarc_temp = False
    except DnsTempError:
        dmarc, dmarc_temp = None, True
    dkim_domains, dkim_temp = _dkim_pass_domains(raw, resolver)
    spf_result, spf_domain = _spf_result(envelope, resolver)
    facts: dict[str, Any] = {
        "dkim_pass_domains": tuple(dkim_domains),
        "spf_result": spf_result,
        "dmarc_policy": dmarc.policy if dmarc else None,
    }
    strict_dkim = dmarc.strict_dkim if dmarc else False
    strict_spf = dmarc.strict_spf if dmarc else False
    if any(_aligned(d, from_domain, strict_dkim) for d in dkim_domains):
        return _passed("dkim", **facts)
    if spf_result == "pass" and _aligned(spf_domain, from_domain, strict_spf):
        return _passed("spf", **facts)
    if dkim_temp or dmarc_temp or spf_result == "temperror":
        return _rejected("dns_temperror", **facts)
    if dmarc is not None:
        return _rejected("dmarc_fail", **facts)
    if spf_result in ("fail", "softfail"):
        return _rejected("spf_fail", **facts)
    if dkim_domains:
        return _rejected("dkim_unaligned", **facts)
    return _rejected("dkim_none", **facts)


# ------------------------------------------------------------------ behind the practice's MTA


_AUTHSERV_ID = re.compile(r"^\s*([^\s;]+)")


def _trusted_results(message: Message, authserv_id: str) -> list[Any]:
    """Results from the topmost contiguous block of our MTA's Authentication-Results."""
    wanted = authserv_id.lower()
    results: list[Any] = []
    in_block = False
    for name, value in message.raw_items() if hasattr(message, "raw_items") else message.items():
        is_ar = name.lower() == "authentication-results"
        match = _AUTHSERV_ID.match(str(value)) if is_ar else None
        ours = bool(match and match.group(1).lower() == wanted)
        if ours:
            in_block = True
            try:
                header = authres.AuthenticationResultsHeader.parse(
                    "Authentication-Results: " + re.sub(r"\r?\n[ \t]", " ", str(value))
                )
            except Exception:  # our own MTA's header should parse; if not, trust nothing
                return []
            results.extend(header.results)
        elif in_block and not is_ar:
            break  # anything below our MTA's block was written before it saw the message
    return results


def _props(result: Any) -> dict[str, str]:
    return {f"{p.type}.{p.name}".lower(): str(p.value) for p in result.properties}


def _check_behind_mta(parsed: ParsedEmail, authserv_id: str) -> AuthResult:
    results = _trusted_results(parsed.message, authserv_id)
    if not results:
        return _rejected("no_trusted_results")
    from_domain = parsed.from_domain
    dkim_domains: list[str] = []
    spf_result = "none"
    spf_aligned = False
    dmarc_seen = None
    for result in results:
        method = str(result.method).lower()
        outcome = str(result.result).lower()
        props = _props(result)
        if method == "dmarc":
            header_from = props.get("header.from", "").lower().rstrip(".")
            if header_from == from_domain:
                dmarc_seen = outcome
        elif method == "dkim" and outcome == "pass":
            domain = props.get("header.d", "").lower()
            if domain:
                dkim_domains.append(domain)
        elif method == "spf":
            spf_result = outcome
            mailfrom = props.get("smtp.mailfrom", "")
            domain = _domain_of(mailfrom) if "@" in mailfrom else mailfrom.lower()
            spf_aligned = (
                outcome == "pass" and bool(domain) and _aligned(domain, from_domain, False)
            )
    facts: dict[str, Any] = {"dkim_pass_domains": tuple(dkim_domains), "spf_result": spf_result}
    if dmarc_seen == "pass":
        return _passed("mta", **facts)
    if any(_aligned(d, from_domain, False) for d in dkim_domains) and dmarc_seen != "fail":
        return _passed("mta", **facts)
    if spf_aligned and dmarc_seen != "fail":
        return _passed("mta", **facts)
    if dmarc_seen in ("temperror",):
        return _rejected("dns_temperror", **facts)
    if dmarc_seen == "fail":
        return _rejected("dmarc_fail", **facts)
    if spf_result in ("fail", "softfail"):
        return _rejected("spf_fail", **facts)
    if dkim_domains:
        return _rejected("dkim_unaligned", **facts)
    return _rejected("dkim_none", **facts)
