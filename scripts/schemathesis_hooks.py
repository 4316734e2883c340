"""schemathesis hooks for scripts/api-conformance.sh.

Some rules of the API cannot be written in a JSON schema, because they depend on the
server's clock or on a value's meaning: an event's `occurred_at` may be at most
`events.max_clock_skew` (10 minutes by default) ahead of the server's clock; a silence
must end in the future, after it starts, and its `match_re` values must be regular
expressions. Generated values that break
one of these are changed so that requests the document calls valid are valid; every
other generated value is sent as generated.
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
    if ctx.operation.method.upper() == "POST" and ctx.operation.path == "/v1/silences":
        return _fix_silence(body)
    return body


# Silences have rules of the same kind: a silence must end in the future and after it
# starts. Whether a `match_re` value is a valid regular expression cannot be stated
# either; generated patterns are replaced by one that is. Everything else is sent as
# generated.

def _future(value, minimum):
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return value
    if when.tzinfo is None or when <= minimum:
        return (minimum + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    return value


def _fix_silence(silence):
    if not isinstance(silence, dict):
        return silence
    now = datetime.now(timezone.utc) + timedelta(minutes=1)
    start = now
    starts_at = silence.get("starts_at")
    if isinstance(starts_at, str):
        try:
            parsed = datetime.fromisoformat(starts_at.replace("Z", "+00:00"))
            if parsed.tzinfo is not None:
                start = max(now, parsed)
        except ValueError:
            pass
    if "ends_at" in silence:
        silence["ends_at"] = _future(silence["ends_at"], start)
    matchers = silence.get("matchers")
    if isinstance(matchers, dict) and isinstance(matchers.get("match_re"), dict):
        table = matchers["match_re"]
        for key, value in table.items():
            # Only patterns are replaced; a value of another type stays as generated.
            if isinstance(value, str):
                table[key] = ".*"
            elif isinstance(value, list):
                table[key] = [".*" if isinstance(item, str) else item for item in value]
    return silence
