"""Which account used which invitation: pure, from the facts the homeserver gives."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UsedToken:
    """An invitation whose token was seen used, with the interval its account was made in."""

    invitation_id: str
    earliest_ms: int
    latest_ms: int
    #: Accounts known to predate the token (made in the same second, before it).
    excluded: frozenset[str] = frozenset()


def match_accounts(used: list[UsedToken], accounts: dict[str, int]) -> dict[str, str | None]:
    """Pair each used invitation with the one account that can only be its own.

    `accounts` maps candidate user ids to their creation time (ms). An invitation gets an
    account when exactly one candidate falls in its interval and that candidate falls in
    no other open invitation's interval; matching one may settle another, so this repeats.
    The rest map to None (the operator decides).
    """
    fits = {
        u.invitation_id: {
            user
            for user, created in accounts.items()
            if u.earliest_ms <= created <= u.latest_ms and user not in u.excluded
        }
        for u in used
    }
    result: dict[str, str | None] = {}
    progress = True
    while progress:
        progress = False
        for inv, users in fits.items():
            if inv in result or len(users) != 1:
                continue
            (user,) = users
            if any(user in others for other, others in fits.items() if other != inv):
                continue
            result[inv] = user
            for other, others in fits.items():
                if other != inv:
                    others.discard(user)
            progress = True
    for inv in fits:
        result.setdefault(inv, None)
    return result
