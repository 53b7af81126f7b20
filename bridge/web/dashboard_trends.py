"""/dashboard/trends: reply times, share met and breaches per week, drawn as SVG.

The numbers are `confidant sla report`'s: the SLA feature's `sla_report` is called once per
week of the range (weeks start on Monday at midnight, practice time) and, when asked
(`?table=therapists`), once for the whole range (the table per therapist), so a chart can
never disagree with the report. Each call reads its period's clocks: the whole-range table
is not drawn unasked, as it doubles the reading. The admin
sees the practice or one therapist; a therapist signed in from the desk room sees their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from urllib.parse import urlencode

from aiohttp import web

from bridge.core.sla_report import ALL, TherapistStats
from bridge.features.sla import sla_report
from bridge.store import dashboard
from bridge.web.dashboard_page import page, require_viewer
from bridge.web.dashboard_svg import Series, bar_chart, line_chart
from bridge.web.deps import deps

routes = web.RouteTableDef()

DEFAULT_WEEKS = 12
MAX_WEEKS = 104


@dataclass(frozen=True, slots=True)
class Week:
    start: date
    row: TherapistStats | None

    @property
    def label(self) -> str:
        return self.start.strftime("%d %b")


def _hours(value: timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds() / 3600, 2)


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _midnight(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, datetime.min.time(), tz)


def week_range(query: dict[str, str], today: date) -> tuple[date, date]:
    """[first Monday, Monday after the last week) from `from`/`to` (ISO dates), clamped."""
    last = monday(today) + timedelta(days=7)
    first = last - timedelta(weeks=DEFAULT_WEEKS)
    try:
        if query.get("from"):
            first = monday(date.fromisoformat(query["from"]))
        if query.get("to"):
            last = monday(date.fromisoformat(query["to"])) + timedelta(days=7)
    except ValueError:
        pass
    if last <= first:
        last = first + timedelta(days=7)
    if (last - first).days > MAX_WEEKS * 7:
        first = last - timedelta(weeks=MAX_WEEKS)
    return first, last


def charts(weeks: list[Week], name: str) -> dict[str, str]:
    """The three charts of `weeks` for the one therapist or the practice called `name`."""
    labels = [w.label for w in weeks]
    median = [_hours(w.row.median) if w.row else None for w in weeks]
    p90 = [_hours(w.row.p90) if w.row else None for w in weeks]
    met = [
        round(w.row.met_share * 100, 1) if w.row and w.row.met_share is not None else None
        for w in weeks
    ]
    breaches = [float(w.row.breaches) if w.row else 0.0 for w in weeks]
    return {
        "reply": line_chart(
            f"Reply time per week, {name} (hours)",
            labels,
            [Series("median", median), Series("90th percentile", p90)],
            unit=" h",
        ),
        "met": line_chart(
            f"Share of replies in time per week, {name}",
            labels,
            [Series("met", met)],
            unit="%",
            y_max=100,
        ),
        "breaches": bar_chart(
            f"Replies after the due time per week, {name}", labels, Series("breaches", breaches)
        ),
    }


@routes.get("/dashboard/trends")
async def trends(request: web.Request) -> web.StreamResponse:
    viewer = await require_viewer(request)
    d = deps(request)
    cfg, tz, now = d.parts.cfg, d.practice_tz, d.clock()
    first, last = week_range(dict(request.query), now.astimezone(tz).date())

    async def report(start: date, end: date) -> list[TherapistStats]:
        a, b = _midnight(start, tz), _midnight(end, tz)
        return await d.reports.rows(
            (a, b, "therapist"), now, lambda: sla_report(d.db, cfg, a, b, now)
        )

    with_table = request.query.get("table") == "therapists"
    whole = await report(first, last) if with_table else []
    ids = [viewer.who] if viewer.therapist else await dashboard.therapist_ids(d.db)
    key = viewer.therapist or request.query.get("therapist") or ALL
    if key != ALL and key not in ids:
        ids.append(key)
    names = await d.names.names(ids)
    weeks: list[Week] = []
    start = first
    while start < last:
        end = start + timedelta(days=7)
        rows = await report(start, end)
        weeks.append(Week(start, next((r for r in rows if r.therapist_id == key), None)))
        start = end
    name = "the practice" if key == ALL else names[key]
    table = [r for r in whole if viewer.is_admin or r.therapist_id == viewer.therapist]
    return page(
        request,
        "trends",
        {
            "charts": charts(weeks, name),
            "weeks": weeks,
            "scope": key,
            "scope_name": name,
            "first": first.isoformat(),
            "last": (last - timedelta(days=1)).isoformat(),
            "by_therapist": [
                {
                    "row": r,
                    "name": "The practice" if r.therapist_id == ALL else names[r.therapist_id],
                }
                for r in table
            ],
            "therapists": [{"id": i, "name": names[i]} for i in ids],
            "with_table": with_table,
            "table_link": "?"
            + urlencode(
                {
                    "from": first.isoformat(),
                    "to": (last - timedelta(days=1)).isoformat(),
                    "therapist": "" if key == ALL else key,
                    "table": "therapists",
                }
            ),
            "hours": _hours,
        },
        viewer=viewer,
    )
