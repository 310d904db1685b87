"""Peer URLs: shape checks run once when settings load, and `mask_url`, the one way a URL is shown.

Why one masking helper for every place: a URL setting may carry a password
(`http://user:PASS@prometheus:9090`, `postgresql://app:PASS@db/empire`), and it reaches a person
through many doors: the start-up log, `/status`, error messages stored in the journal (so `empire
explain` prints them), `empire config show`, reprs. Each of those calls `mask_url`, and the CLI's
log formatter applies it to every line as a last line of defence (a traceback, a library's
message). It works on free text, so an error message that embeds a URL is masked as a whole.

Why the shape checks run at load time and not where the URL is used: a Redis URL the client cannot parse surfaced deep
inside the daemon, as a traceback from the pools setup and then "leader election failed ... not
acting this tick" on every tick, while the process stayed up and `run --once` exited 0; a bad
Prometheus URL read as "metric source unreachable". Checked here, it is one line naming the
variable, what is wrong and the valid forms, and exit code 2, before anything starts.

Messages never echo the URL, which may carry a password: at most its scheme, which cannot.
Only the shape is checked (scheme, host, port, database number); whether the peer answers is
the adapters' business (a `TemporaryError` when it does not).
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qs, urlsplit

__all__ = ["HTTP_FORMS", "REDIS_FORMS", "check_http_url", "check_redis_url", "mask_url"]

REDIS_FORMS = "redis://[[user]:password@]host[:port][/db], rediss://... (TLS), unix:///path/to/redis.sock[?db=N]"
HTTP_FORMS = "http://host[:port][/path] or https://host[:port][/path]"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_ENCODE_HINT = "(percent-encode / ? # @ : in a password)"

_TOKEN_END = re.compile(r"[\s'\"<>]")
# ?password=... &api_key=... &X-Amz-Signature=...: query parameters that carry a credential.
_PARAM = re.compile(r"(?P<head>[?&][\w.-]{1,64}=)[^&#\s'\"<>]*")
_SECRET_NAME = re.compile(r"pass|pwd|token|secret|key|sig|auth|credential", re.IGNORECASE)


def _mask_userinfo(text: str) -> str:
    """Each `scheme://user:password@` -> `scheme://user:***@`. The userinfo runs to the *last* @ of
    the token (an unencoded @ in a password leaves nothing behind), never across whitespace, quotes
    or angle brackets. A scan rather than a regular expression: linear on any input."""
    parts, pos = [], 0
    while (i := text.find("://", pos)) != -1:
        start = i + 3
        end_match = _TOKEN_END.search(text, start)
        end = end_match.start() if end_match else len(text)
        at = text.rfind("@", start, end)
        user, colon, _ = text[start:at].partition(":") if at != -1 else ("", "", "")
        if colon:
            parts.append(f"{text[pos:start]}{user}:***")
            pos = at
        parts.append(text[pos:end])
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def _mask_param(m: re.Match[str]) -> str:
    return f"{m['head']}***" if _SECRET_NAME.search(m["head"]) else m.group(0)


def mask_url(text: str) -> str:
    """`text` with every URL's password, and every credential-like query value, replaced by `***`.

    `postgresql+asyncpg://app:secret@host/db` -> `postgresql+asyncpg://app:***@host/db`; the user
    name stays (it says who connects, as SQLAlchemy's `hide_password` does). Works on one URL or on
    a whole message; text without a URL comes back unchanged."""
    if "://" not in text and "=" not in text:
        return text
    return _PARAM.sub(_mask_param, _mask_userinfo(text))


def _scheme(url: str) -> str:
    """The scheme as written, or a description of its absence. Never more of the URL than that."""
    head, sep, _ = url.partition("://")
    if not sep:
        return ""
    return head if _SCHEME.fullmatch(head) else "?"


def _describe_scheme(scheme: str) -> str:
    if scheme == "":
        return "not a URL (no scheme://)"
    if scheme == "?":
        return "not a URL (malformed scheme)"
    return f"unsupported scheme {scheme!r}"


def _host_and_port(url: str, parts: SplitResult) -> str | None:
    """What is wrong with the host:port part, or None. A password with a reserved character in
    it splits the URL in the wrong place, and shows up here as a missing host or a bad port."""
    hint = f" {_ENCODE_HINT}" if "@" in url else ""
    if not parts.hostname:
        return f"no host{hint}"
    try:
        port = parts.port
    except ValueError:
        return f"the port is not a number from 1 to 65535{hint}"
    if port == 0:
        return "the port is not a number from 1 to 65535"
    return None


def check_redis_url(url: str) -> None:
    """Raise `ValueError` (what is wrong; the valid forms) unless redis-py can use `url`."""
    scheme = _scheme(url)
    if scheme not in ("redis", "rediss", "unix"):  # lower case only: redis-py compares as written
        raise ValueError(f"{_describe_scheme(scheme)}; valid forms: {REDIS_FORMS}")
    parts = urlsplit(url)
    if scheme == "unix":
        problem = None if parts.path not in ("", "/") else "no socket path"
    else:
        problem = _host_and_port(url, parts)
        if problem is None and parts.path.strip("/") and not parts.path.strip("/").isdecimal():
            problem = "the database number (the path after host:port) is not a whole number"
    if problem is None:
        db = parse_qs(parts.query).get("db")
        if db and not db[0].isdecimal():
            problem = "the db= query value is not a whole number"
    if problem:
        raise ValueError(f"{problem}; valid forms: {REDIS_FORMS}")


def check_http_url(url: str) -> None:
    """Raise `ValueError` unless `url` is http:// or https:// with a host (and a valid port)."""
    scheme = _scheme(url)
    if scheme.lower() not in ("http", "https"):
        raise ValueError(f"{_describe_scheme(scheme)}; valid forms: {HTTP_FORMS}")
    problem = _host_and_port(url, urlsplit(url))
    if problem:
        raise ValueError(f"{problem}; valid forms: {HTTP_FORMS}")
