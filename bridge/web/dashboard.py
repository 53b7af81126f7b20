"""The practice dashboard's lists: today's queue (/dashboard), the pairs (/dashboard/pairs),
one pair and its actions (/dashboard/pairs/{label}), pending invitations.

Every list is filtered and paged in SQL (`bridge.store.dashboard`) and keeps its filters and
page in the URL, so the page's own reload (every `REFRESH_SECONDS`) and the back button keep
the reader's place. A therapist signed in from the desk room sees only their own pairs and
queue; the admin sees the practice. No page shows message content, patient names or
addresses: labels and ids, and therapists' display names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bridge.config import Config
from bridge.core.sla import SlaPolicy
from bridge.core.workhours import WorkingCalendar
from bridge.features.sla import sla_policy, working_calendar
from bridge.store import clocks, dashboard, invitations
from bridge.store.base import from_ms, to_ms
from bridge.store.dashboard import PAIR_STATES, PairFilter
from bridge.store.invitations import InvitationStatus
from bridge.web.dashboard_page import Viewer, page, require_viewer
from bridge.web.dashboard_queue import local_time, queue_item
from bridge.web.deps import deps
from bridge.web.health import check_health

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

QUEUE_PAGE = 25
PAIRS_PAGE = 50


@dataclass(frozen=True, slots=True)
class Listing:
    """A list's filter and page, read from the query string."""

    filter: PairFilter
    page: int

    def link(self, page: int) -> str:
        """The query string of `page` with the same filters."""
        f = self.filter
        query = {
            "therapist": f.therapist or "",
            "policy": f.policy or "",
            "state": f.state or "",
            "q": f.label or "",
            "page": str(page),
        }
        return "?" + urlencode({k: v for k, v in query.items() if v})


def listing(request: web.Request, viewer: Viewer) -> Listing:
    """The filters of the query; a therapist's own id replaces any therapist asked for."""
    query = request.query
    state = query.get("state") or None
    try:
        number = max(1, int(query.get("page", "1")))
    except ValueError:
        number = 1
    return Listing(
        PairFilter(
            therapist=viewer.therapist or query.get("therapist") or None,
            policy=query.get("policy") or None,
            state=state if state in PAIR_STATES else None,
            label=(query.get("q") or "").strip()[:16] or None,
        ),
        number,
    )


def paging(listing: Listing, total: int, size: int) -> dict[str, Any]:
    pages = max(1, -(-total // size))
    number = min(listing.page, pages)
    return {
        "total": total,
        "page": number,
        "pages": pages,
        "prev": listing.link(number - 1) if number > 1 else None,
        "next": listing.link(number + 1) if number < pages else None,
        "offset": (number - 1) * size,
    }


class Policies:
    """The core's policy per configured name (a name no longer configured: the default)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.calendar: WorkingCalendar = working_calendar(cfg.practice)
        self._known: dict[str, SlaPolicy] = {}

    def __call__(self, name: str) -> SlaPolicy:
        if name not in self._known:
            policies = self.cfg.policies
            key = name if name in policies else "default"
            self._known[name] = sla_policy(key, policies[key], self.cfg.practice)
        return self._known[name]


async def filter_choices(request: web.Request, viewer: Viewer) -> dict[str, Any]:
    """The therapists (with names) and policies a filter offers."""
    d = deps(request)
    ids = [viewer.who] if viewer.therapist else await dashboard.therapist_ids(d.db)
    names = await d.names.names(ids)
    return {
        "therapists": [{"id": i, "name": names[i]} for i in ids],
        "policy_names": sorted(d.policies),
        "states": PAIR_STATES,
    }


async def _everyone(request: web.Request) -> list[dict[str, str]]:
    """Every therapist with a live pair (who may cover for whom)."""
    d = deps(request)
    ids = await dashboard.therapist_ids(d.db)
    names = await d.names.names(ids)
    return [{"id": i, "name": names[i]} for i in ids]


@routes.get("/dashboard")
async def overview(request: web.Request) -> web.StreamResponse:
    """Today's queue: open clocks by due time, what comes next, flags; health for the admin."""
    viewer = await require_viewer(request)
    d = deps(request)
    cfg = d.parts.cfg
    now = d.clock()
    lst = listing(request, viewer)
    total = await dashboard.count_queue(d.db, lst.filter)
    pg = paging(lst, total, QUEUE_PAGE)
    rows = await dashboard.page_queue(d.db, lst.filter, offset=pg["offset"], limit=QUEUE_PAGE)
    found = [(row, await clocks.get(d.db, row.clock_id)) for row in rows]
    names = await d.names.names(c.therapist_id for _row, c in found if c is not None)
    policies = Policies(cfg)
    queue = [
        queue_item(
            clock,
            policies(clock.policy),
            policies.calendar,
            now,
            label=row.label,
            therapist=names[clock.therapist_id],
            joined=row.joined,
            consent_state=row.consent_state,
        )
        for row, clock in found
        if clock is not None
    ]
    never_joined, consent_pending = await dashboard.flag_counts(d.db, viewer.therapist)
    return page(
        request,
        "dashboard",
        {
            "now": local_time(now, policies.calendar, now),
            "queue": queue,
            "paging": pg,
            "listing": lst,
            "never_joined": never_joined,
            "consent_pending": consent_pending,
            "checks": await check_health(d) if viewer.is_admin else [],
            "cover_choices": await _everyone(request),
            **await filter_choices(request, viewer),
        },
        viewer=viewer,
        refresh=True,
    )


@routes.get("/dashboard/pairs")
async def pair_list(request: web.Request) -> web.StreamResponse:
    """Pairs by label, filtered by therapist, policy and state, searched by label."""
    viewer = await require_viewer(request)
    d = deps(request)
    now_ms = to_ms(d.clock())
    lst = listing(request, viewer)
    total = await dashboard.count_pairs(d.db, lst.filter, now_ms)
    pg = paging(lst, total, PAIRS_PAGE)
    rows = await dashboard.page_pairs(
        d.db, lst.filter, now_ms, offset=pg["offset"], limit=PAIRS_PAGE
    )
    names = await d.names.names(r.therapist_id for r in rows)
    return page(
        request,
        "pairs",
        {
            "pairs": [{"row": r, "therapist": names[r.therapist_id]} for r in rows],
            "paging": pg,
            "listing": lst,
            **await filter_choices(request, viewer),
        },
        viewer=viewer,
        refresh=True,
    )


@routes.get("/dashboard/pairs/{label}")
async def pair_page(request: web.Request) -> web.StreamResponse:
    """One pair: its state and, for the admin, reassign and close."""
    viewer = await require_viewer(request)
    d = deps(request)
    label = request.match_info["label"]
    row = await dashboard.pair_by_label(d.db, label, viewer.therapist)
    if row is None:
        return page(request, "notfound", {"what": "pair"}, viewer=viewer, status=404)
    ids = await dashboard.therapist_ids(d.db)
    names = await d.names.names([*ids, row.therapist_id])
    return page(
        request,
        "pair",
        {
            "pair": row,
            "therapist": names[row.therapist_id],
            "therapists": [{"id": i, "name": names[i]} for i in ids if i != row.therapist_id],
            "notice": request.query.get("done"),
        },
        viewer=viewer,
    )


@routes.get("/dashboard/invitations")
async def invitation_list(request: web.Request) -> web.StreamResponse:
    """Pending invitations (ids, therapist, expiry, e-mails sent; never address or code)."""
    viewer = await require_viewer(request)
    d = deps(request)
    pending = await invitations.list_invitations(d.db, status=InvitationStatus.PENDING)
    if viewer.therapist:
        pending = [r for r in pending if r.therapist_id == viewer.therapist]
    staff = await dashboard.therapist_ids(d.db) if viewer.is_admin else []
    names = await d.names.names([*(r.therapist_id for r in pending), *staff])
    tz = d.practice_tz
    return page(
        request,
        "invitations",
        {
            # The invite form (the administrator's): therapists and policies to choose from.
            "therapists": [{"id": i, "name": names[i]} for i in staff],
            "policies": sorted(d.policies),
            "invitations": [
                {
                    "id": r.invitation_id,
                    "therapist": names[r.therapist_id],
                    "policy": r.policy,
                    "expires": from_ms(r.expires_at).astimezone(tz).strftime("%a %d %b %H:%M"),
                    "sent_count": r.sent_count,
                }
                for r in pending
            ],
            "notice": request.query.get("done"),
        },
        viewer=viewer,
    )
