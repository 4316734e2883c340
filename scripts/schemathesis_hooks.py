"""schemathesis hooks for scripts/api-conformance.sh.

One rule of the API cannot be written in a JSON schema: an event's `occurred_at` may be
at most `events.max_clock_skew` (10 minutes by default) ahead of the server's clock, a
bound that moves with time. A generated time later than that is moved a day into the
past, so that requests the document calls valid are valid; every other generated value
is sent as generated.
"""

from datetime import datetime, timedelta, timezone

import schemathesis

LATEST_ALLOWED = timedelta(minutes=5)


def _in_the_past(value):
    if not isinstance(value, str):
        return value
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if when.tzinfo is None:
        return value
    if when > datetime.now(timezone.utc) + LATEST_ALLOWED:
        return (datetime.now(timezone.utc) - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    return value


def _fix_event(event):
    if isinstance(event, dict) and "occurred_at" in event:
        event["occurred_at"] = _in_the_past(event["occurred_at"])
    return event


@schemathesis.hook
def map_body(ctx, body):
    if ctx.operation.method.upper() == "POST" and ctx.operation.path == "/v1/events":
        if isinstance(body, list):
            return [_fix_event(event) for event in body]
        return _fix_event(body)
    return body
