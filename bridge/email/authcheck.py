r"""Sender authentication: is the From one of the pair's addresses, and really from there?

Two modes (config `smtp.sender_auth`):

- ``direct``: the bridge receives mail from the internet and checks DKIM (dkimpy), SPF
  (pyspf) and DMARC alignment itself. Alignment is relaxed unless the domain's DMARC
  record asks for strict; organisational domains come from the Public Suffix List, so
  ``a.example.co.uk`` and ``b.example.co.uk`` align but ``x.co.uk`` and ``y.co.uk`` do not.
  An aligned pass is required even when the domain publishes no DMARC record or
  ``p=none``: a pair's room only takes mail whose From is proven.
- ``behind_mta``: the practice's MTA has done the checks; only its own
  ``Authentication-Results`` (the configured authserv-id) are trusted, and only in the
  one place the MTA writes them: a single block next to its topmost ``Received``
  (RFC 8601 section 5). Results under other ids are ignored; results under our id
  anywhere else are refused (``550 5.7.1``), and so are trusted headers that contradict
  each other; a ``dmarc=fail`` among them always refuses.

  The MTA must remove incoming headers with its own authserv-id (RFC 8601 section 5);
  a forged one it leaves directly below its ``Received`` looks exactly like its own.
  With Postfix, OpenDKIM and OpenDMARC (which insert their results below Postfix's
  ``Received``): ``AuthservID`` the same in opendkim.conf and opendmarc.conf and equal
  to ``smtp.authserv_id``; OpenDKIM ``RemoveARAll yes``; OpenDMARC ``TrustedAuthservIDs``
  that same id only; and in Postfix ``header_checks = pcre:/etc/postfix/strip_ar.pcre``
  holding ``/^Authentication-Results:\s*mx\.practice\.example\b/ IGNORE`` (header_checks
  see the client's headers only, not the milters'). A content filter that re-injects
  mail (amavis) must run the milters on the re-injecting ``smtpd``, so that the results
  stay next to the topmost ``Received``.

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
    #: no_trusted_results | untrusted_results | conflicting_results | dns_temperror
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
    "untrusted_results": (
        550,
        "5.7.1",
        "Authentication results with this server's id were not written by the trusted mail server",
    ),
    "conflicting_results": (
        550,
        "5.7.1",
        "Authentication results from the trusted mail server contradict each other",
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
    """The production resolver: DNS through dnspython.

    By default the system's resolvers (/etc/resolv.conf); `nameservers` (addresses) and
    `port` send every query to those instead, for an install whose validating resolver is
    not the system's, or a test's server on loopback.
    """

    def __init__(
        self,
        timeout: float = 5.0,
        *,
        nameservers: Sequence[str] = (),
        port: int = 53,
    ) -> None:
        import dns.resolver

        if nameservers:
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = list(nameservers)
            self._resolver.port = port
        else:
            self._resolver = dns.resolver.Resolver()
        self._timeout = timeout

    @classmethod
    def for_nameserver(cls, address: str, timeout: float = 5.0) -> DnsPythonResolver:
        """A resolver asking one server, written `host`, `host:port` or `[v6 address]:port`."""
        host, port = address.strip(), 53
        if host.startswith("["):
            inner, _, rest = host[1:].partition("]")
            host = inner
            if rest.startswith(":"):
                port = int(rest[1:])
        elif host.count(":") == 1:
            host, _, text = host.partition(":")
            port = int(text)
        if not host or not 0 < port < 65536:
            raise ValueError("a nameserver is host, host:port or [address]:port")
        return cls(timeout, nameservers=[host], port=port)

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
# Headers an MTA prepends in transit; only these may stand above the MTA's own results.
_TRACE_FIELDS = frozenset({"received", "received-spf", "authentication-results"})
_TRACE_PREFIXES = ("arc-",)


class _Untrusted(Exception):
    """Results with our authserv-id sit where the MTA cannot have written them."""


def _is_trace(name: str) -> bool:
    return name in _TRACE_FIELDS or name.startswith(_TRACE_PREFIXES)


def _trusted_results(message: Message, authserv_id: str) -> list[Any]:
    """The results of the MTA's own block of Authentication-Results, or [] when it wrote none.

    Every MTA prepends its `Received` above the content it was handed (RFC 5321 4.4),
    so everything a sender wrote lies below the MTA's topmost `Received`. Milters place
    their results next to that line: Postfix with OpenDKIM/OpenDMARC inserts them
    directly below it (milter position 1), Sendmail-style position 0 directly above it.
    The trusted block is therefore one contiguous run of headers with our authserv-id
    that touches (or holds) the topmost `Received`, with only trace headers above it. A header with
    our id anywhere else (below the sender's own `Received` lines or body headers, or
    in a message with no `Received` at all) raises `_Untrusted`: the MTA did not strip
    it as RFC 8601 section 5 requires, so nothing with that id can be believed.
    """
    wanted = authserv_id.lower()
    fields: list[tuple[str, str, bool]] = []
    for name, value in message.raw_items():
        lname = name.lower()
        text = str(value)
        match = _AUTHSERV_ID.match(text) if lname == "authentication-results" else None
        fields.append((lname, text, bool(match and match.group(1).lower() == wanted)))
    ours = [index for index, (_n, _v, own) in enumerate(fields) if own]
    if not ours:
        return []
    received = [index for index, (name, _v, _o) in enumerate(fields) if name == "received"]
    if not received:
        raise _Untrusted("no Received: the message did not come through the MTA")
    # The MTA's topmost Received may stand inside the block: a policy service's PREPEND
    # (policyd-spf) lands above it, the milters' results below it.
    block = sorted({*ours, received[0]})
    first, last = block[0], block[-1]
    if block != list(range(first, last + 1)):
        raise _Untrusted("results with our id outside the block at the MTA's Received")
    if not all(_is_trace(name) for name, _v, _o in fields[:first]):
        raise _Untrusted("results below content the sender wrote")
    results: list[Any] = []
    for index in ours:
        try:
            header = authres.AuthenticationResultsHeader.parse(
                "Authentication-Results: " + re.sub(r"\r?\n[ \t]", " ", fields[index][1])
            )
        except Exception as exc:  # our own MTA's header should parse; if not, trust none
            raise _Untrusted("unparseable results") from exc
        results.extend(header.results)
    return results


def _props(result: Any) -> dict[str, str]:
    return {f"{p.type}.{p.name}".lower(): str(p.value) for p in result.properties}


def _signed_domains(message: Message) -> set[str]:
    """The d= domains of the DKIM-Signature headers the message carries."""
    domains: set[str] = set()
    for value in message.get_all("DKIM-Signature") or ():
        match = re.search(r"(?:^|;)\s*d\s*=\s*([^;\s]+)", str(value))
        if match:
            domains.add(match.group(1).lower().rstrip("."))
    return domains


def _check_behind_mta(parsed: ParsedEmail, authserv_id: str) -> AuthResult:
    try:
        results = _trusted_results(parsed.message, authserv_id)
    except _Untrusted:
        return _rejected("untrusted_results")
    if not results:
        return _rejected("no_trusted_results")
    from_domain = parsed.from_domain
    signed = _signed_domains(parsed.message)
    dmarc: set[str] = set()
    spf: dict[str, set[str]] = {}
    dkim_by_domain: dict[str, set[str]] = {}
    dkim_plain: set[str] = set()
    for result in results:
        method = str(result.method).lower()
        outcome = str(result.result).lower()
        props = _props(result)
        if method == "dmarc":
            header_from = props.get("header.from", "").lower().rstrip(".")
            if header_from == from_domain:
                dmarc.add(outcome)
        elif method == "dkim":
            domain = props.get("header.d", "").lower().rstrip(".")
            if domain:
                dkim_by_domain.setdefault(domain, set()).add(outcome)
            else:
                dkim_plain.add(outcome)
        elif method == "spf":
            mailfrom = props.get("smtp.mailfrom", "")
            domain = _domain_of(mailfrom) if "@" in mailfrom else mailfrom.lower().rstrip(".")
            spf.setdefault(domain, set()).add(outcome)
    # Several headers with our id are the MTA's only if it stripped forged ones; when they
    # disagree about the same check, one of them is not the MTA's, so nothing is trusted.
    dkim_pass = sorted(
        d for d, outcomes in dkim_by_domain.items() if outcomes == {"pass"} and d in signed
    )
    spf_outcomes = set().union(*spf.values()) if spf else set()
    facts: dict[str, Any] = {
        "dkim_pass_domains": tuple(dkim_pass),
        "spf_result": next(iter(spf_outcomes)) if len(spf_outcomes) == 1 else "none",
    }
    if "fail" in dmarc:
        return _rejected("dmarc_fail", **facts)
    any_dkim_pass = "pass" in dkim_plain or any("pass" in o for o in dkim_by_domain.values())
    conflicting = (
        len(dmarc) > 1
        or len(spf_outcomes) > 1
        or any(len(outcomes) > 1 for outcomes in dkim_by_domain.values())
        or (any_dkim_pass and bool(dkim_plain - {"pass"}))
    )
    if conflicting:
        return _rejected("conflicting_results", **facts)
    if dmarc == {"temperror"}:
        return _rejected("dns_temperror", **facts)
    if dmarc == {"pass"}:
        return _passed("mta", **facts)
    # dmarc=none (no record) or permerror (a broken one): the From must still be proven.
    if any(_aligned(d, from_domain, False) for d in dkim_pass):
        return _passed("mta", **facts)
    spf_aligned = any(
        outcomes == {"pass"} and bool(domain) and _aligned(domain, from_domain, False)
        for domain, outcomes in spf.items()
    )
    if spf_aligned:
        return _passed("mta", **facts)
    if spf_outcomes & {"fail", "softfail"}:
        return _rejected("spf_fail", **facts)
    if dkim_pass:
        return _rejected("dkim_unaligned", **facts)
    return _rejected("dkim_none", **facts)
