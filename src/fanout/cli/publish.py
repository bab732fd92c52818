"""``fanout publish``: publish one message into a room, from a shell, with no node here.

Through Redis (``--broker``, the emitter: the same publish step as the nodes) or through
a hub's HTTP API (``--url``, for a hub on the in-memory broker). Parse and delegate.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import sys
import urllib.parse
from typing import Any

from fanout.cli.settings_flags import add_settings_flags
from fanout.settings import Settings

# The settings a publish through Redis depends on: they must be the nodes' settings.
EMITTER_SETTINGS = (
    "redis_key_prefix",
    "max_message_bytes",
    "room_pattern",
    "history_max_messages",
    "history_max_bytes",
    "idempotency_max_ids",
    "idempotency_ttl_s",
    "redis_room_ttl_s",
    "redis_timeout_s",
)
API_KEY_ENV = "FANOUT_API_KEY"

EPILOG = """\
DATA is parsed as JSON if it parses ('{"n": 1}', '42', 'true', '"quoted"'), else sent as
a string ('hello world'); --text always sends it as a string.

exit status:
  0  published (also when the id was already known: '(duplicate)', nothing sent again)
  1  refused or failed: a bad room, id or data, data too large, the API key refused, the
     broker down or not answering; the reason is printed on stderr. A retry with the
     same --id is safe: the message is stored at most once.
  2  bad arguments (a missing or contradictory argument, an unknown URL scheme, an
     unreadable --binary file, a bad setting)

examples:
  fanout publish --broker redis://127.0.0.1:6379/0 news '{"title": "hello"}' --id news-1
  fanout publish --broker redis://127.0.0.1:6379/0 images --binary cat.png
  FANOUT_API_KEY=... fanout publish --url http://127.0.0.1:8000 news 'hello'
"""


class Refused(Exception):
    """The hub or Redis answered no, or could not be reached: exit 1 with the reason."""


def add_parser(commands: Any) -> None:
    pub = commands.add_parser(
        "publish",
        help="publish one message into a room (through Redis, or a hub's HTTP API)",
        description="Publish DATA (or the bytes of --binary FILE) to every member of ROOM,"
        " on every node, and print where it landed: 'epoch=E offset=N'. With --broker"
        " redis://..., no node needs to run here: the message goes through the same atomic"
        " step in Redis as a client's publish. With --url, it goes through the hub's HTTP"
        " API (how to reach a hub on the in-memory broker).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pub.add_argument("room", metavar="ROOM", help="the room to publish to")
    pub.add_argument(
        "data",
        metavar="DATA",
        nargs="?",
        default=None,
        help="the message: JSON if it parses, else a string (omit it with --binary)",
    )
    where = pub.add_mutually_exclusive_group()
    where.add_argument(
        "--broker",
        metavar="URL",
        default=None,
        help="publish through Redis: redis://[:PASSWORD@]HOST:PORT/DB or rediss://... (the"
        " nodes' --broker; default: FANOUT_BROKER)",
    )
    where.add_argument(
        "--url",
        metavar="URL",
        default=None,
        help="publish through the hub's HTTP API at this address (http://HOST:PORT, with"
        " the path prefix of an embedded hub: http://HOST/rt)",
    )
    pub.add_argument(
        "--api-key",
        metavar="KEY",
        default=None,
        help=f"the hub's API key, for --url (default: {API_KEY_ENV}; prefer the variable,"
        " since command lines are visible to other users)",
    )
    pub.add_argument(
        "--id",
        dest="msg_id",
        metavar="ID",
        default=None,
        help="publish id (1-128 characters): a retry with the same id is stored once",
    )
    kind = pub.add_mutually_exclusive_group()
    kind.add_argument("--text", action="store_true", help="send DATA as a string, never as JSON")
    kind.add_argument(
        "--binary", metavar="FILE", default=None, help="publish the bytes of FILE ('-': stdin)"
    )
    pub.add_argument(
        "--json",
        dest="as_json",
        action="store_true",
        help='print {"epoch": ..., "offset": ..., "duplicate": ...} instead of one line',
    )
    pub.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="with --url, give up on the hub's answer after this long (default: 10)",
    )
    add_settings_flags(
        pub,
        "settings for --broker",
        "must match the nodes' (each also read from FANOUT_<NAME> in the environment)",
        EMITTER_SETTINGS,
    )
    pub.set_defaults(handler=run)


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {raw!r}")
    return value


def run(args: argparse.Namespace) -> int:
    publish_one = _publish_http if args.url is not None else _publish_redis
    try:
        answer = publish_one(args, _data(args))
    except _BadArguments as exc:
        return _fail(str(exc), 2)
    except Refused as exc:
        return _fail(str(exc), 1)
    if args.as_json:
        print(json.dumps(answer))
    else:
        line = f"epoch={answer['epoch']} offset={answer['offset']}"
        print(line + (" (duplicate)" if answer["duplicate"] else ""))
    return 0


class _BadArguments(Exception):
    pass


def _fail(reason: str, code: int) -> int:
    print(f"fanout publish: {reason}", file=sys.stderr)
    return code


def _data(args: argparse.Namespace) -> Any:
    if args.binary is not None:
        if args.data is not None:
            raise _BadArguments("give DATA or --binary FILE, not both")
        try:
            if args.binary == "-":
                return sys.stdin.buffer.read()
            with open(args.binary, "rb") as f:
                return f.read()
        except OSError as exc:
            raise _BadArguments(f"--binary: cannot read {args.binary}: {exc.strerror}") from None
    if args.data is None:
        raise _BadArguments("DATA is missing (or give --binary FILE)")
    if args.text:
        return args.data
    try:
        return json.loads(args.data)
    except ValueError:
        return args.data


def _publish_redis(args: argparse.Namespace, data: Any) -> dict[str, Any]:
    import fanout
    from fanout.protocol.errors import BrokerRefused

    overrides = {name: getattr(args, name) for name in EMITTER_SETTINGS}
    try:
        settings = Settings.from_env(**overrides)
    except ValueError as exc:
        raise _BadArguments(str(exc)) from None
    url = args.broker or settings.broker
    if url == "memory":
        raise _BadArguments(
            "give --broker redis://HOST:PORT/DB (the nodes' Redis), or --url http://HOST:PORT"
            " for a hub on the in-memory broker"
        )
    try:
        emitter = fanout.SyncEmitter(url, settings=settings)
    except fanout.ConfigError as exc:
        raise _BadArguments(str(exc)) from None
    with emitter:
        try:
            published = emitter.publish(args.room, data, id=args.msg_id)
        except fanout.InvalidPublish as exc:
            raise Refused(f"refused ({exc.code}): {exc.reason}") from None
        except fanout.BrokerError as exc:
            retry = "" if isinstance(exc, BrokerRefused) else _retry(args)
            raise Refused(f"not published through {emitter.address}: {exc}{retry}") from None
    return {"epoch": published.epoch, "offset": published.offset, "duplicate": published.duplicate}


def _retry(args: argparse.Namespace) -> str:
    """What a retry does, when the outcome is unknown (the request may have arrived)."""
    if args.msg_id is not None:
        return " (a retry with the same --id is safe)"
    return " (it may still have been stored: publish with --id so that a retry is safe)"


def _publish_http(args: argparse.Namespace, data: Any) -> dict[str, Any]:
    base = args.url.rstrip("/")
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _BadArguments(f"--url: expected http://HOST:PORT[/PREFIX], got {args.url!r}")
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV, "")
    if not api_key:
        raise _BadArguments(f"--url needs the hub's API key: --api-key or {API_KEY_ENV}")
    headers = {"Authorization": f"apikey {api_key}", "Accept": "application/json"}
    path = f"{parts.path}/api/publish"
    if isinstance(data, bytes):
        query = {"room": args.room} | ({"id": args.msg_id} if args.msg_id is not None else {})
        path += "?" + urllib.parse.urlencode(query)
        body = data
        headers["Content-Type"] = "application/octet-stream"
    else:
        frame = {"room": args.room, "data": data}
        if args.msg_id is not None:
            frame["id"] = args.msg_id
        body = json.dumps(frame).encode()
        headers["Content-Type"] = "application/json"
    endpoint = f"{parts.scheme}://{parts.netloc}{path.split('?')[0]}"
    try:
        status, raw = _post(parts, path, body, headers, args.timeout)
    except TimeoutError:
        raise Refused(f"{base} did not answer within {args.timeout} s{_retry(args)}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise Refused(f"no answer from {base}: {exc or type(exc).__name__}{_retry(args)}") from None
    if status != 200:
        raise Refused(f"{endpoint} answered HTTP {status}: {_api_error(status, raw)}")
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not {"epoch", "offset"} <= answer.keys():
        raise Refused(f"{endpoint} answered {raw[:200]!r}, not an epoch and an offset")
    return {
        "epoch": answer["epoch"],
        "offset": answer["offset"],
        "duplicate": bool(answer.get("duplicate", False)),
    }


def _post(
    parts: urllib.parse.SplitResult,
    path: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
) -> tuple[int, bytes]:
    """POST ``body``; the status and the body of the answer."""
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    try:
        # The hub may answer (413) before reading a large body, and close: its answer is
        # there to read, and says why.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _api_error(status: int, raw: bytes) -> str:
    """The API's ``{"code", "reason"}`` as text, or what came instead."""
    try:
        error = json.loads(raw)
        text = f"{error['code']}: {error['reason']}"
    except (ValueError, KeyError, TypeError):
        text = raw[:2000].decode(errors="replace").strip() or "(no reason given)"
    if status == 503:
        text += " (a retry with the same --id is safe)"
    return text
