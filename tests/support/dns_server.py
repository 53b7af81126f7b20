"""An authoritative DNS server on loopback (UDP) for sender-authentication tests.

It answers TXT, A and AAAA queries from a fixed table, NXDOMAIN for names it does not
know, and stays silent for names under a `silent` suffix, so a client sees a timeout.
Built on dnslib's wire format; one thread, stopped by `close()`.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Collection, Mapping, Sequence

from dnslib import AAAA, QTYPE, RCODE, RR, TXT, A, DNSRecord

__all__ = ["LoopbackDns"]


def _txt_chunks(value: str) -> list[bytes]:
    # A TXT character-string holds at most 255 bytes; long records (DKIM keys) are split.
    data = value.encode("ascii")
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


class LoopbackDns:
    """Serve `records` ((name, qtype) -> values) on 127.0.0.1:<port>."""

    def __init__(
        self,
        records: Mapping[tuple[str, str], Sequence[str]],
        silent: Collection[str] = (),
    ) -> None:
        self._records = {
            (name.lower().rstrip("."), qtype.upper()): list(values)
            for (name, qtype), values in records.items()
        }
        self._silent = tuple(s.lower().rstrip(".") for s in silent)
        self.queries: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="loopback-dns", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                reply = self._answer(DNSRecord.parse(data))
            except Exception:  # a packet we cannot read gets no answer, like a real server
                continue
            if reply is not None:
                self._sock.sendto(reply.pack(), peer)

    def _answer(self, request: DNSRecord) -> DNSRecord | None:
        name = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE[request.q.qtype]
        self.queries.append((name, qtype))
        if any(name == s or name.endswith("." + s) for s in self._silent):
            return None
        reply = request.reply()
        values = self._records.get((name, qtype))
        if values is None:
            if not any(known == name for known, _ in self._records):
                reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for value in values:
            if qtype == "TXT":
                rdata: TXT | A | AAAA = TXT(_txt_chunks(value))
            elif qtype == "A":
                rdata = A(value)
            else:
                rdata = AAAA(value)
            reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=rdata, ttl=60))
        return reply

    def close(self) -> None:
        """Stop serving and release the port."""
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
