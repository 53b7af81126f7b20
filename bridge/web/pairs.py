"""/api/v1/pairs: list, create (idempotent), show, change (the patient's language),
reassign and close pairs."""

from __future__ import annotations

from aiohttp import web

from bridge.core.language import LANGUAGES, parse_language
from bridge.email.openpgp import KeyProblem
from bridge.features.email.outbound.consent import revoke as revoke_consent
from bridge.features.email.outbound.keys import put_patient_key
from bridge.features.language import language_of, set_patient_language
from bridge.provision import has_account
from bridge.store import clocks, pairs
from bridge.store.pairs import PairStatus
from bridge.web import API
from bridge.web.deps import deps
from bridge.web.errors import ApiError
from bridge.web.inputs import json_body, local_user_id, policy_name
from bridge.web.views import clock_json, pair_json

routes = web.RouteTableDef()


@routes.get(f"{API}/pairs")
async def list_pairs(request: web.Request) -> web.Response:
    d = deps(request)
    status_text = request.query.get("status")
    try:
        status = PairStatus(status_text) if status_text else None
    except ValueError:
        raise ApiError("bad_request", "status must be provisioning, active or removed") from None
    records = await pairs.list_pairs(
        d.db, status=status, therapist_id=request.query.get("therapist")
    )
    return web.json_response({"pairs": [pair_json(r) for r in records]})


@routes.post(f"{API}/pairs")
async def create_pair(request: web.Request) -> web.Response:
    d = deps(request)
    body = await json_body(request)
    cfg = d.parts.cfg
    server, federate = cfg.homeserver.server_name, cfg.practice.federate
    email = body.get("patient_email")
    if email is not None and (not isinstance(email, str) or "@" not in email):
        raise ApiError("bad_request", "patient_email must be an e-mail address")
    # Without a patient account, an e-mail pair: she is reached at patient_email only.
    patient = (
        local_user_id(body, "patient", server, federate)
        if body.get("patient") is not None or email is None
        else None
    )
    therapist = local_user_id(body, "therapist", server, federate)
    policy = policy_name(body, d.policies)
    # As `confidant pair add`: no room and no invitation for an account that does not exist.
    token = cfg.synapse_admin.access_token
    admin_token = token.get_secret_value() if token else None
    for role, user_id in (("therapist", therapist), ("patient", patient)):
        if (
            user_id is not None
            and await has_account(d.pairs.rest, user_id, admin_token=admin_token) is False
        ):
            raise ApiError("no_account", f"{role} {user_id} has no account on the homeserver")
    record, created = await d.pairs.add_pair(
        patient, therapist, d.clock(), policy=policy, patient_email=email, actor="api"
    )
    return web.json_response(
        {"pair": pair_json(record), "created": created}, status=201 if created else 200
    )


@routes.get(f"{API}/pairs/{{ref}}")
async def show_pair(request: web.Request) -> web.Response:
    d = deps(request)
    record = await d.pairs.resolve(request.match_info["ref"])
    clock = await clocks.get_open(d.db, record.pair_id)
    return web.json_response(
        {
            "pair": pair_json(record),
            "open_clock": clock_json(clock, record.label, d.clock()) if clock else None,
        }
    )


@routes.patch(f"{API}/pairs/{{ref}}")
async def change_pair(request: web.Request) -> web.Response:
    """Set the language the patient's texts are written in (null: the practice's)."""
    d = deps(request)
    body = await json_body(request)
    usage = f'give {{"language": one of {", ".join(LANGUAGES)}, or null for the practice\'s}}'
    if set(body) != {"language"}:
        raise ApiError("bad_request", f"only the language can be changed here: {usage}")
    value = body["language"]
    language = parse_language(value) if isinstance(value, str) else None
    if value is not None and language is None:
        raise ApiError("bad_request", f"{value!r} is not a language of the texts: {usage}")
    record = await d.pairs.resolve(request.match_info["ref"])
    await set_patient_language(d.parts, record, language, actor="api", now=d.clock())
    current, own = await language_of(d.parts, record.patient_id)
    return web.json_response(
        {"pair": pair_json(record), "language": current, "language_is_own": own}
    )


@routes.put(f"{API}/pairs/{{ref}}/key")
async def put_key(request: web.Request) -> web.Response:
    """The patient's OpenPGP public key on file: mail to her is encrypted to it."""
    d = deps(request)
    body = await json_body(request)
    armored = body.get("key")
    if not isinstance(armored, str) or not armored.strip():
        raise ApiError("bad_request", 'give {"key": "<her ASCII-armored public key>"}')
    record = await d.pairs.resolve(request.match_info["ref"])
    try:
        key = await put_patient_key(
            d.db, d.parts.sealer, d.parts.audit, record.pair_id, armored.encode(), d.clock(),
            actor="api",
        )  # fmt: skip
    except KeyProblem as err:
        raise ApiError("bad_request", str(err)) from None
    return web.json_response({"pair": pair_json(record), "fingerprint": key.spaced})


@routes.delete(f"{API}/pairs/{{ref}}/email-consent")
async def revoke_email_consent(request: web.Request) -> web.Response:
    """Take back the patient's consent to e-mail: nothing clinical leaves by e-mail after."""
    d = deps(request)
    record = await d.pairs.resolve(request.match_info["ref"])
    revoked = await revoke_consent(d.db, d.parts.audit, record.pair_id, "api", d.clock())
    return web.json_response({"pair": pair_json(record), "revoked": revoked})


@routes.post(f"{API}/pairs/{{ref}}/reassign")
async def reassign_pair(request: web.Request) -> web.Response:
    d = deps(request)
    cfg = d.parts.cfg
    therapist = local_user_id(
        await json_body(request), "therapist", cfg.homeserver.server_name, cfg.practice.federate
    )
    record = await d.pairs.reassign(request.match_info["ref"], therapist, d.clock(), actor="api")
    return web.json_response({"pair": pair_json(record)})


@routes.delete(f"{API}/pairs/{{ref}}")
async def remove_pair(request: web.Request) -> web.Response:
    d = deps(request)
    record = await d.pairs.remove_pair(request.match_info["ref"], d.clock(), actor="api")
    return web.json_response({"pair": pair_json(record)})
