"""Pieces both channel variants share: the statistics record and the exceptions.

The asyncio and threads channels behave identically; keeping their vocabulary here means an
engine (or a test) can handle either without knowing which one it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, final

from rxpipe.errors import RxpipeError

__all__ = (
    "BrokenChannelError",
    "ChannelStatistics",
    "ClosedChannelError",
    "EndOfChannel",
    "WouldBlock",
)


class WouldBlock(RxpipeError):
    """A ``*_nowait`` operation could not complete without waiting."""


class EndOfChannel(RxpipeError):
    """The sending side closed the channel and every buffered item was received."""


class BrokenChannelError(RxpipeError):
    """The receiving side closed the channel; nobody will ever take what is sent.

    The push engine's cancellation signal: a sender seeing it stops producing.
    """


class ClosedChannelError(RxpipeError):
    """A side used its own end after closing it (a bug in the caller, as in Go's panic).

    Raised by ``send`` after ``close()``/``fail()``, and by ``receive`` after
    ``close_receiving()``; also what parties of that side blocked at the time get.
    """


@final
@dataclass(frozen=True, slots=True)
class ChannelStatistics:
    """A snapshot of one channel, for the run's Report.

    ``sent == received + current + discarded`` always holds: an item whose send raised
    (cancelled, timed out, broken, closed) was never counted as sent.
    """

    #: Items held by the channel now (a rendezvous item being handed over counts: at most 1).
    current: int
    #: The largest ``current`` ever seen; never above ``max(capacity, 1)``.
    peak: int
    #: The ``buffer`` the channel was created with (0: rendezvous).
    capacity: int
    #: Senders waiting for space, or (rendezvous) for a receiver to take their item.
    blocked_senders: int
    #: Receivers waiting for an item.
    blocked_receivers: int
    #: Items accepted by the channel.
    sent: int
    #: Items handed to receivers.
    received: int
    #: The sending side called ``close()`` or ``fail()``.
    closed: bool
    #: The receiving side called ``close_receiving()``.
    receiving_closed: bool
    #: Buffered items thrown away by ``close_receiving()`` (the engine counts them as lost).
    discarded: int


#: Batches ``send_many`` uses as they are; anything else is copied into a list first. A
#: tuple of concrete types: ``isinstance`` against the ``Sequence`` ABC is ten times slower.
SEQUENCES: Final = (list, tuple, range)


def check_buffer(buffer: int) -> int:
    """Validate a ``buffer`` argument; booleans are rejected as a likely mistake."""
    if isinstance(buffer, bool) or not isinstance(buffer, int):
        raise TypeError(f"buffer must be an int, got {type(buffer).__name__}")
    if buffer < 0:
        raise ValueError(f"buffer must be >= 0, got {buffer}")
    return buffer


def check_max_n(max_n: int) -> None:
    """Validate ``receive_batch``'s ``max_n``."""
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1, got {max_n}")
