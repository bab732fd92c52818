"""Who may connect and what they may do: tokens, room grants, Origin.

(Per-connection rate limits are frame policy: ``fanout.core.ratelimit``.)

- ``tokens``: JWT verification with pinned algorithms; minting for development.
- ``grants``: the rooms a token lets a connection subscribe and publish to.
- ``origin``: same-origin by default, plus an allowlist.
- ``handshake``: the checks run before a WebSocket is accepted.
- ``redact``: keeps tokens out of the access log.
"""
