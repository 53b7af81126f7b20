"""Inbound e-mail: messages accepted per second, and e-mail-to-room latency.

Acceptance: real SMTP sessions (smtplib, a few connections in parallel, many messages each)
into the listener with the durable inbox on SQLite and, when one answers on
127.0.0.1:5432, PostgreSQL; each `250` follows a committed, sealed row. The baseline is
the same listener whose `accept` stores nothing (the SMTP dialogue, parsing and sender
check alone).

Latency: the running bridge on a temporary homeserver; from the start of the SMTP
session until the patient's client has decrypted the post, one e-mail at a time, next to
the raw homeserver send-to-decrypt latency of two plain clients in the same run.

`python -m bench email` puts the rows in the common table; `python -m bench.email` runs
only this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import smtplib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from nio import Event, RoomMessageText

from bench.baseline import measure_baseline, temporary_homeserver
from bench.table import Row, format_table
from bridge.adapters.render import Renderer
from bridge.adapters.smtp import InboundFacts, InboundHandler, SmtpListener, SmtpSettings
from bridge.app import App, default_features, make_sealer
from bridge.audit.log import AuditLog
from bridge.config import minimal_config
from bridge.email.authcheck import AuthMode, AuthPolicy
from bridge.features.email import EmailFeature, attach_email, build_email, install_email
from bridge.store import open_database, pairs
from bridge.store.base import Database
from tests.support.bridge_app import bridge_config, notice_containing
from tests.support.nio_user import NioUser

ACCEPT_MESSAGES = 400
CONNECTIONS = 4
LATENCY_MESSAGES = 60
DOMAIN = "in.example.net"
AUTHSERV = "mx.practice.test"
PATIENT = "pat@example.org"
SMTP = {
    "enabled": True,
    "inbound_domain": DOMAIN,
    "sender_auth": "behind_mta",
    "authserv_id": AUTHSERV,
}
RECEIVE_TIMEOUT_S = 60.0


def _now() -> datetime:
    return datetime.now(UTC)


def _message(address: str, body: str, size: int = 2000) -> bytes:
    msg = EmailMessage()
    # As the practice's MTA hands it on: its own Received on top, its results below it; the
    # message carries no DKIM signature, so SPF is what counts.
    msg["Received"] = f"from mail.example.org (mail.example.org [192.0.2.7]) by {AUTHSERV}"
    msg["Authentication-Results"] = (
        f"{AUTHSERV}; dkim=pass header.d=example.org; spf=pass smtp.mailfrom={PATIENT};"
        " dmarc=pass header.from=example.org"
    )
    msg["From"] = f"Pat <{PATIENT}>"
    msg["To"] = address
    msg["Subject"] = "Benchmark"
    msg["Message-ID"] = f"<{secrets.token_hex(12)}@example.org>"
    msg.set_content(body + "\n\n" + "words " * (size // 6))
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def _session(port: int, address: str, messages: list[bytes]) -> None:
    """One SMTP connection delivering every message in turn, as an MTA's queue runner does."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        for raw in messages:
            client.sendmail(PATIENT, [address], raw)


async def _deliver_all(port: int, address: str, count: int) -> float:
    """Deliver `count` messages over CONNECTIONS parallel sessions; messages per second."""
    batches = [
        [_message(address, f"bench {c}-{i}") for i in range(count // CONNECTIONS)]
        for c in range(CONNECTIONS)
    ]
    started = time.perf_counter()
    await asyncio.gather(*(asyncio.to_thread(_session, port, address, b) for b in batches))
    return sum(len(b) for b in batches) / (time.perf_counter() - started)


@contextlib.asynccontextmanager
async def _postgres() -> AsyncIterator[str | None]:
    """A fresh PostgreSQL database URL, or None when no server answers."""
    try:
        import asyncpg

        admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres", timeout=3)
    except Exception:
        yield None
        return
    name = f"confidant_bench_{secrets.token_hex(4)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _accept_rate(db: Database, workdir: Path) -> float:
    """Messages per second accepted into the durable inbox of `db`."""
    cfg = minimal_config(data_dir=str(workdir), smtp=SMTP)
    sealer = make_sealer(cfg)
    pair = await pairs.create(
        db,
        patient_id="@pat:bench",
        therapist_id="@doc:bench",
        now=0,
        patient_email=PATIENT,
        sealer=sealer,
    )
    await pairs.set_room(db, pair.pair_id, "!bench:bench")
    feature = build_email(
        cfg,
        db=db,
        sealer=sealer,
        audit=AuditLog(db, sealer, cfg.audit.signing_key.get_secret_value()),
        template_env=Renderer().env,
        uploader=_NoUploads(),
        clock=_now,
        port=0,
        run_relay=False,
    )
    await feature.start()
    try:
        return await _deliver_all(
            feature.listener.port, f"pair-{pair.email_token}@{DOMAIN}", ACCEPT_MESSAGES
        )
    finally:
        await feature.stop()


class _NoUploads:
    async def upload_encrypted(self, data: bytes, mimetype: str, filename: str) -> dict[str, Any]:
        raise RuntimeError("the acceptance benchmark relays nothing")


async def _noop_rate() -> float:
    """The same SMTP dialogue, parsing and sender check, with an accept that stores nothing."""
    address = f"pair-noop@{DOMAIN}"

    async def resolve(_: str) -> str | None:
        return "pair-noop"

    async def allowed(_: str) -> list[str]:
        return [PATIENT]

    async def accept(pair_id: str, raw: bytes, facts: InboundFacts) -> None:
        return None

    handler = InboundHandler(
        resolve_recipient=resolve,
        allowed_senders=allowed,
        accept=accept,
        policy=AuthPolicy(AuthMode.BEHIND_MTA, AUTHSERV),
    )
    listener = SmtpListener(SmtpSettings(host="127.0.0.1", port=0), handler)
    await listener.start()
    try:
        return await _deliver_all(listener.port, address, ACCEPT_MESSAGES)
    finally:
        await listener.stop()


async def measure_acceptance() -> list[Row]:
    """Accepted messages per second on SQLite (and PostgreSQL when available)."""
    rows: list[Row] = []
    noop = await _noop_rate()
    label = f"e-mail accepted, {CONNECTIONS} SMTP sessions, durable commit"
    with tempfile.TemporaryDirectory(prefix="confidant-bench-email-") as tmp:
        db = await open_database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            rows.append(Row(f"{label} (SQLite)", await _accept_rate(db, Path(tmp)), "msg/s", noop))
        finally:
            await db.close()
        async with _postgres() as url:
            if url is not None:
                db = await open_database(url)
                try:
                    rate = await _accept_rate(db, Path(tmp))
                finally:
                    await db.close()
                rows.append(Row(f"{label} (PostgreSQL)", rate, "msg/s", noop))
    return rows


class _Arrivals:
    """When each canary became readable in the patient's client."""

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self._waiting: dict[str, asyncio.Future[float]] = {}

    def expect(self, canary: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[canary] = future
        return future

    def __call__(self, room_id: str, event: Event) -> None:
        if room_id != self.room_id or not isinstance(event, RoomMessageText):
            return
        for canary, future in list(self._waiting.items()):
            if canary in event.body and not future.done():
                future.set_result(time.perf_counter())
                del self._waiting[canary]


async def _register(hs: Any, prefix: str) -> tuple[str, str]:
    password = secrets.token_urlsafe(12)
    user_id, _ = await asyncio.to_thread(
        hs.register_user, f"{prefix}-{secrets.token_hex(4)}", password
    )
    return user_id, password


async def measure_latency() -> list[Row]:
    """E-mail to decrypted post, next to the raw send-to-decrypt latency of the same run."""
    async with temporary_homeserver() as hs:
        baseline = await measure_baseline(hs, n=100)
        with tempfile.TemporaryDirectory(prefix="confidant-bench-email-") as tmp:
            workdir = Path(tmp)
            bot_id, bot_password = await _register(hs, "bench-bot")
            cfg = bridge_config(hs, bot_id, bot_password, workdir / "bridge", smtp=SMTP)
            holder: dict[str, EmailFeature] = {}

            async def email(app: App) -> None:
                feature = await attach_email(app, port=0)
                assert feature is not None
                holder["email"] = feature

            features = [f for f in default_features() if f is not install_email] + [email]
            app = App(cfg, features=features)
            await app.start()
            clients: list[NioUser] = []
            try:
                assert app.parts is not None and app.service is not None
                for role in ("patient", "therapist"):
                    user_id, password = await _register(hs, f"bench-{role}")
                    clients.append(await NioUser.create(hs.url, user_id, password, workdir / role))
                patient, therapist = clients
                record, _ = await app.parts.pairs.add_pair(
                    patient.user_id, therapist.user_id, _now(), patient_email=PATIENT
                )
                assert record.room_id is not None
                await patient.wait_for(record.room_id, notice_containing("Welcome"), timeout=60)
                arrivals = _Arrivals(record.room_id)
                patient.add_listener(arrivals)
                port = holder["email"].listener.port
                address = f"pair-{record.email_token}@{DOMAIN}"
                send = _one_email(port, address, arrivals)
                await send("warm-up")
                latencies = [await send(f"seq{i}") for i in range(LATENCY_MESSAGES)]
            finally:
                for client in clients:
                    await client.close()
                await app.stop()
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return [
        Row(
            "e-mail -> decrypted post latency p50",
            statistics.median(latencies),
            "ms",
            baseline["latency_p50_ms"],
        ),
        Row("e-mail -> decrypted post latency p95", cuts[94], "ms", baseline["latency_p95_ms"]),
    ]


def _one_email(port: int, address: str, arrivals: _Arrivals) -> Callable[[str], Awaitable[float]]:
    async def send(label: str) -> float:
        canary = f"canary-{label}-{secrets.token_hex(4)}"
        arrived = arrivals.expect(canary)
        raw = _message(address, canary, size=400)
        started = time.perf_counter()
        await asyncio.to_thread(_session, port, address, [raw])
        readable = await asyncio.wait_for(arrived, RECEIVE_TIMEOUT_S)
        return (readable - started) * 1000

    return send


async def run() -> list[Row]:
    """Rows for `python -m bench`."""
    return [*await measure_acceptance(), *await measure_latency()]


def main() -> None:
    """Measure and print this benchmark's table."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nio").setLevel(logging.ERROR)
    print(format_table(asyncio.run(run())))


if __name__ == "__main__":
    main()
