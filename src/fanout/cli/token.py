"""``fanout token``: mint a signed token for development; parse and delegate."""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any


def add_parser(commands: Any) -> None:
    token = commands.add_parser(
        "token",
        help="mint a signed token (JWT) for development",
        description="Print a token that `fanout serve` with the same secret accepts. The"
        " secret comes from --secret-file or FANOUT_AUTH_SECRET (as for `fanout serve`);"
        " with --private-key-file the token is signed with that key instead, for a hub"
        " started with --auth-public-key-file. Production tokens come from your own login"
        " service, in the same shape (docs/security.md).",
        epilog="example: fanout token --sub alice --rooms 'chat.*'",
    )
    token.add_argument("--sub", default=None, help="who the token is for (the 'sub' claim)")
    token.add_argument(
        "--rooms",
        action="append",
        default=[],
        metavar="PATTERN",
        help="room or pattern (* = any run of characters) granted for subscribe and publish;"
        " repeatable",
    )
    token.add_argument(
        "--subscribe",
        action="append",
        default=[],
        metavar="PATTERN",
        help="room or pattern granted for subscribe only; repeatable",
    )
    token.add_argument(
        "--publish",
        action="append",
        default=[],
        metavar="PATTERN",
        help="room or pattern granted for publish only; repeatable",
    )
    token.add_argument(
        "--ttl",
        type=_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="lifetime in seconds (default: 3600)",
    )
    token.add_argument("--secret-file", default=None, help="file holding the HMAC secret")
    token.add_argument(
        "--private-key-file", default=None, help="PEM private key (RSA, EC or Ed25519)"
    )
    token.add_argument(
        "--algorithm",
        default=None,
        help="JWT algorithm (default: HS256 with a secret, inferred from a private key)",
    )
    token.add_argument("--audience", default=None, help="the 'aud' claim")
    token.add_argument("--issuer", default=None, help="the 'iss' claim")
    token.set_defaults(handler=run)


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {raw!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from fanout.auth.mint import MintError, mint_from_options

    try:
        token = mint_from_options(
            subject=args.sub,
            rooms=args.rooms,
            subscribe=args.subscribe,
            publish=args.publish,
            ttl_s=args.ttl,
            secret=os.environ.get("FANOUT_AUTH_SECRET", ""),
            secret_file=args.secret_file,
            private_key_file=args.private_key_file,
            algorithm=args.algorithm,
            audience=args.audience,
            issuer=args.issuer,
        )
    except MintError as exc:
        print(f"fanout token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0
