"""Close codes and error codes: the numbers and names clients rely on."""

from enum import IntEnum, StrEnum

SUBPROTOCOL = "fanout.v1"


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY = 1008
    TOO_BIG = 1009
    # Never sent: what a peer reports when the close frame carried no code (1005), or
    # when the connection ended without a close frame at all (1006, e.g. after the
    # close timeout's abort).
    NO_STATUS = 1005
    ABNORMAL = 1006
    INTERNAL = 1011
    SERVER_FULL = 1013
    # Disconnected by the application (kick, revoke): do not reconnect by yourself.
    DISCONNECTED = 4003
    SLOW_CONSUMER = 4008
    RATE_LIMITED = 4029


class ErrorCode(StrEnum):
    """The ``code`` of an ``error`` frame."""

    BAD_JSON = "bad_json"
    BAD_FRAME = "bad_frame"
    UNKNOWN_TYPE = "unknown_type"
    BAD_ROOM = "bad_room"
    TOO_BIG = "too_big"
    NOT_SUBSCRIBED = "not_subscribed"
    TOO_MANY_ROOMS = "too_many_rooms"
    FORBIDDEN = "forbidden"
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    # The broker refused the call in a way retrying cannot fix (a misconfigured Redis:
    # a wrong key type, a script error): clients do not retry it.
    BROKER_ERROR = "broker_error"
    INTERNAL = "internal"
