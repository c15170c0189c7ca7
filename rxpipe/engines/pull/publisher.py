"""The pull engine's publisher edge: a flow as a cold, spec-compliant ``Publisher``.

Each ``subscribe`` opens a fresh run. A run the engine can iterate in any thread
(:meth:`~rxpipe.engines.base.Engine.runs_inline`: a synchronous pull run) is produced on the
thread that calls ``request`` (rule 3.10 allows it); any other run (a push run, a run that
waits) is pulled by a pump on an event loop in a thread of its own. Either way signals go out
through a :class:`~rxpipe.spec.DrainLoop`, so they stay serial across threads (rule 1.3) and
``request`` from inside ``on_next`` never recurses (rule 3.3).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from typing import Any, Generic, TypeVar, final

from rxpipe.engines.base import Engine, Plan, Run
from rxpipe.spec import (
    MAX_DEMAND,
    DrainLoop,
    InertSubscription,
    Subscriber,
    Subscription,
    add_demand,
    check_request,
    report_subscriber_error,
    signal_safely,
)

__all__ = ("FlowPublisher",)

T = TypeVar("T")


@final
class FlowPublisher(Generic[T]):
    """A cold publisher over a flow: each subscriber gets its own run."""

    __slots__ = ("__weakref__", "_engine", "_lock", "_plan", "_seen")

    def __init__(self, plan: Plan, engine: Engine) -> None:
        self._plan = plan
        self._engine = engine
        self._lock = threading.Lock()
        # Subscribers seen, by identity and weakly: a second subscribe of the same instance
        # is refused (rule 2.12; an equal but distinct subscriber is another subscriber),
        # without keeping any subscriber alive (rule 3.13).
        self._seen: dict[int, tuple[weakref.ref[Any], _Seen]] = {}

    def __repr__(self) -> str:
        return f"<FlowPublisher {self._plan.source_name} on {self._engine.name}>"

    def subscribe(self, subscriber: Subscriber[T]) -> None:
        if subscriber is None:
            raise TypeError("rule 1.9: subscribe(None): the subscriber must not be None")
        seen = _Seen()
        with self._lock:
            earlier = self._remember(subscriber, seen)
            if earlier is not None:
                earlier.rejected = True
        if earlier is not None:
            self._reject_again(subscriber, earlier)
            return
        try:
            run = self._engine.open(self._plan)
        except Exception as exc:  # rule 1.9: a refusal is signalled, never raised
            signal_safely(subscriber, "on_subscribe", InertSubscription())
            signal_safely(subscriber, "on_error", exc)
            return
        # Only a run the engine can iterate in any thread, one running an event loop
        # included, is produced inside request(); others get a pump (a push run needs a loop
        # or threads of its own; a waiting run would block the caller).
        sub: Subscription = (
            _FlowSubscription(subscriber, run)
            if self._engine.runs_inline(self._plan)
            else _PumpedSubscription(subscriber, run)
        )
        with self._lock:
            seen.subscription = weakref.ref(sub)
            rejected = seen.rejected
        if rejected:  # subscribed again meanwhile, from another thread: it was told no
            sub.cancel()
            return
        if not signal_safely(subscriber, "on_subscribe", sub):
            sub.cancel()
        elif isinstance(sub, _PumpedSubscription):
            sub.activate()  # on_next may come from the pump's thread: only after on_subscribe

    def _remember(self, subscriber: object, seen: _Seen) -> _Seen | None:
        """Record ``subscriber`` (under the lock); what was recorded for it earlier, if any."""
        key = id(subscriber)
        entry = self._seen.get(key)
        if entry is not None and entry[0]() is subscriber:
            return entry[1]
        seen_map = self._seen

        def forget(ref: weakref.ref[Any]) -> None:  # the subscriber is gone: so is its id
            if seen_map.get(key, (None,))[0] is ref:
                del seen_map[key]

        try:
            ref = weakref.ref(subscriber, forget)
        except TypeError:  # not weak-referenceable: it cannot be tracked
            return None
        seen_map[key] = (ref, seen)
        return None

    @staticmethod
    def _reject_again(subscriber: Subscriber[T], earlier: _Seen) -> None:
        """Answer a second subscribe of ``subscriber`` with ``on_subscribe`` then ``on_error``.

        That ``on_error`` is the subscriber's terminal signal (rule 1.7: nothing may follow
        it), so its first subscription, if still live, is cancelled first: its run ends and
        its pump thread with it, even though the subscriber will never cancel it itself.
        """
        ref = earlier.subscription
        live = ref() if ref is not None else None
        if live is not None:
            live.cancel()
        signal_safely(subscriber, "on_subscribe", InertSubscription())
        signal_safely(
            subscriber,
            "on_error",
            ValueError("rule 2.12: this subscriber is already subscribed to this publisher"),
        )


@final
class _Seen:
    """What a publisher remembers of a subscriber: its subscription (weakly: never keep a
    run alive for the bookkeeping) and whether it was subscribed again."""

    __slots__ = ("rejected", "subscription")

    def __init__(self) -> None:
        self.rejected = False
        self.subscription: weakref.ref[Subscription] | None = None


@final
class _FlowSubscription(Subscription, Generic[T]):
    """One subscriber's run: demand in, signals out, through a drain loop."""

    __slots__ = (
        "_bad",
        "_cancelled",
        "_done",
        "_drain_loop",
        "_it",
        "_lock",
        "_requested",
        "_run",
        "_subscriber",
        "_untaken",
    )

    def __init__(self, subscriber: Subscriber[T], run: Run[T]) -> None:
        self._subscriber: Subscriber[T] | None = subscriber
        self._run = run
        self._untaken = 0
        self._it: Iterator[T] | None = None
        self._lock = threading.Lock()
        self._requested = 0
        self._cancelled = False
        self._done = False
        self._bad: ValueError | None = None
        self._drain_loop = DrainLoop(self._drain)

    def request(self, n: int) -> None:
        error = check_request(n)
        with self._lock:
            if self._done or self._cancelled:
                return  # rules 3.6 and 1.6: no-ops once cancelled or terminated
            if error is not None:
                if self._bad is None:
                    self._bad = error  # rule 3.9: signalled through on_error, never raised
            else:
                self._requested = add_demand(self._requested, n)
        self._drain_loop.schedule()

    def cancel(self) -> None:
        with self._lock:
            if self._done or self._cancelled:
                return  # rule 3.7: idempotent
            self._cancelled = True
        self._drain_loop.schedule()

    def not_taken(self) -> None:
        """Called from inside ``on_next``: the item handed over was not taken after all."""
        with self._lock:
            self._untaken += 1

    def _end(self) -> Subscriber[T] | None:
        """Terminal bookkeeping: stop the run and drop the subscriber (rule 3.13)."""
        with self._lock:
            self._done = True
            subscriber, self._subscriber = self._subscriber, None
            untaken, self._untaken = self._untaken, 0
        self._run.give_back(untaken)  # fetched from the run, never received: lost, not delivered
        it, self._it = self._it, None
        if it is not None:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        try:
            self._run.close()
        except Exception as exc:  # rules 3.15/3.16: never out of request() or cancel()
            report_subscriber_error(self._run, "close", exc)
        return subscriber

    def _drain(self) -> None:
        if self._subscriber is None:
            return
        if self._cancelled:
            self._end()
            return
        if self._bad is not None:
            error = self._bad
            subscriber = self._end()
            if subscriber is not None:
                signal_safely(subscriber, "on_error", error)
            return
        if self._it is None:
            self._it = iter(self._run)
        it = self._it
        while self._emit_one(it):
            pass

    def _emit_one(self, it: Iterator[T]) -> bool:
        """Emit one item if there is demand; False when the pass is over."""
        with self._lock:
            if self._cancelled or self._bad is not None:
                stop = True
            elif self._requested == 0:
                return False
            else:
                stop = False
        if stop:  # woken for cancel or a bad request while emitting: handle it now
            self._drain()
            return False
        try:
            item = next(it)
        except StopIteration:
            subscriber = self._end()
            if subscriber is not None:
                signal_safely(subscriber, "on_complete")
            return False
        except Exception as exc:
            subscriber = self._end()
            if subscriber is not None:
                signal_safely(subscriber, "on_error", exc)
            return False
        with self._lock:
            if self._requested != MAX_DEMAND:
                self._requested -= 1
        subscriber = self._subscriber
        if subscriber is None:
            return False
        if not signal_safely(subscriber, "on_next", item):
            self._end()  # rule 2.13: a subscriber that raised is treated as cancelled
            return False
        return True


_COMPLETE: Any = object()


@final
class _PumpedSubscription(Subscription, Generic[T]):
    """A subscription over a run that cannot be pulled inline: one that waits (async stages,
    ``Flow.queue``, publishers), or one of the push engine (its tasks need an event loop of
    their own, which cannot nest in a requester's running loop; its threads would block the
    requester).

    Such a run cannot be pulled inside ``request`` without blocking the caller, perhaps for
    ever (rules 1.9, 3.4, 3.5), or at all inside a running event loop. So a pump task, on an
    event loop in a thread of its own, pulls one item at a time while there is unmet demand,
    and the drain loop hands over what it fetched: ``request`` and ``cancel`` return at once,
    and ``cancel`` interrupts the pump's wait. The thread ends with the run.
    """

    __slots__ = (
        "_active",
        "_bad",
        "_cancelled",
        "_done",
        "_drain_loop",
        "_end",
        "_handing",
        "_idle",
        "_items",
        "_lock",
        "_loop",
        "_requested",
        "_run",
        "_settled",
        "_started",
        "_subscriber",
        "_task",
        "_untaken",
        "_wake",
    )

    def __init__(self, subscriber: Subscriber[T], run: Run[T]) -> None:
        self._subscriber: Subscriber[T] | None = subscriber
        self._run = run
        self._active = False
        self._lock = threading.Lock()
        self._items: deque[T] = deque()
        self._requested = 0
        self._cancelled = False
        self._done = False
        self._bad: ValueError | None = None
        self._end: Any = None  # _COMPLETE or the run's exception, once the pump ended
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._idle = False  # the pump waits for demand: only then does a request wake it
        # Items fetched from the run but never received (cleared on cancel, or refused with
        # not_taken): the run counts them lost, not delivered, before it is closed. So the
        # pump closes it only once no item is in the middle of a hand-over (_handing).
        self._untaken = 0
        self._handing = False
        self._settled: asyncio.Event | None = None  # the pump waits for the hand-over to end
        self._drain_loop = DrainLoop(self._drain)

    # -- Subscription ----------------------------------------------------------------------------
    def request(self, n: int) -> None:
        error = check_request(n)
        with self._lock:
            if self._done or self._cancelled:
                return
            if error is not None:
                self._bad = self._bad or error
            else:
                self._requested = add_demand(self._requested, n)
            start = not self._started and error is None
            self._started = self._started or start
        if start:
            threading.Thread(target=self._pump_thread, name="rxpipe-publisher", daemon=True).start()
        else:
            self._poke()
        self._drain_loop.schedule()

    def cancel(self) -> None:
        with self._lock:
            if self._done or self._cancelled:
                return
            self._cancelled = True
            started = self._started
        if started:
            self._interrupt()
        else:
            self._close_unstarted()
        self._drain_loop.schedule()

    def not_taken(self) -> None:
        """Called from inside ``on_next``: the item handed over was not taken after all."""
        with self._lock:
            self._untaken += 1

    def _close_unstarted(self) -> None:
        """Cancelled (or refused) before any item was asked for: end the run here and now."""
        try:
            self._run.close()
        except Exception as exc:  # rules 3.15/3.16: reported, never raised at the caller
            report_subscriber_error(self._run, "close", exc)

    # -- the pump, on its own loop ---------------------------------------------------------------
    def _poke(self) -> None:
        """Wake the pump if it waits for demand (a cross-thread wake-up is a system call:
        never one per item while the pump is busy anyway)."""
        with self._lock:
            loop, wake = self._loop, self._wake
            if not self._idle:
                return
            self._idle = False
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # its loop already closed: the pump is over
                pass

    def _interrupt(self) -> None:
        with self._lock:
            loop, task = self._loop, self._task
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass

    def _pump_thread(self) -> None:
        end: Any = None
        try:
            end = asyncio.run(self._pump_main())
        except asyncio.CancelledError:  # cancelled while closing: the subscriber is gone
            end = None
        # the terminal signal goes out only now: the loop is closed, the thread just ends
        self._finish_pump(end)

    async def _pump_main(self) -> Any:
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            self._task = asyncio.current_task()
            cancelled = self._cancelled
        if cancelled:
            await self._run.aclose()
            return None
        end: Any = _COMPLETE
        items = aiter(self._run)
        try:
            while True:
                wake = self._wake
                while True:
                    with self._lock:
                        want = self._requested > len(self._items) and not self._cancelled
                        stop = self._cancelled or self._bad is not None
                    if want or stop:
                        break
                    wake.clear()
                    with self._lock:
                        want = (
                            self._requested > len(self._items)
                            or self._cancelled
                            or self._bad is not None
                        )
                        self._idle = not want
                    if not want:
                        await wake.wait()
                if stop:
                    end = None
                    break
                try:
                    item = await anext(items)
                except StopAsyncIteration:
                    break
                with self._lock:
                    self._items.append(item)
                self._drain_loop.schedule()
        except asyncio.CancelledError:
            end = None  # cancelled by the subscriber
        except Exception as exc:
            end = exc
        finally:
            self._run.give_back(await self._settle())
            try:
                await self._run.aclose()
            except Exception as exc:  # rules 3.15/3.16: reported, never raised at the caller
                report_subscriber_error(self._run, "aclose", exc)
            with self._lock:
                self._loop = self._task = self._wake = None
        return end

    async def _settle(self) -> int:
        """Wait until every fetched item was handed over, or never will be (cancelled); how
        many were fetched but never received. Cancelled meanwhile, it waits on."""
        self._drain_loop.schedule()  # hand over here what may be handed over at once
        while True:
            with self._lock:
                if not self._handing and (
                    not self._items or self._cancelled or self._bad is not None
                ):
                    untaken = self._untaken + len(self._items)
                    self._untaken = 0
                    self._items.clear()
                    self._settled = None
                    return untaken
                settled = self._settled = asyncio.Event()
            try:
                await settled.wait()
            except asyncio.CancelledError:  # the subscriber cancelled: check again
                pass

    def _handed(self) -> None:
        """A hand-over ended: wake the pump if it waits for that to close the run."""
        with self._lock:
            self._handing = False
            loop, settled = self._loop, self._settled
        if loop is not None and settled is not None:
            try:
                loop.call_soon_threadsafe(settled.set)
            except RuntimeError:
                pass

    def _finish_pump(self, end: Any) -> None:
        with self._lock:
            self._end = _COMPLETE if end is None else end
            self._loop = self._task = self._wake = None
        self._drain_loop.schedule()

    # -- the drain loop: signals, serially -------------------------------------------------------
    def activate(self) -> None:
        """``on_subscribe`` returned: signals may flow now, from any thread (rule 1.3)."""
        self._active = True
        self._drain_loop.schedule()

    def _drain(self) -> None:
        subscriber = self._subscriber
        if subscriber is None or not self._active:
            return
        if self._cancelled:
            self._drop()
            return
        if self._bad is not None:
            error = self._bad
            with self._lock:
                started = self._started
            if started:
                self._interrupt()
            else:
                self._close_unstarted()
            self._drop()
            signal_safely(subscriber, "on_error", error)
            return
        while self._emit_one(subscriber):
            self._poke()

    def _emit_one(self, subscriber: Subscriber[T]) -> bool:
        """Hand over one fetched item, or the end; False when this pass is over."""
        with self._lock:
            interrupted = self._cancelled or self._bad is not None
            item: Any = _COMPLETE
            end: Any = None
            if interrupted:
                pass
            elif self._items and self._requested > 0:
                item = self._items.popleft()
                self._handing = True
                if self._requested != MAX_DEMAND:
                    self._requested -= 1
            elif not self._items and self._end is not None:
                end = self._end
                self._drop_locked()
            else:
                return False
        if interrupted:  # cancel or a bad request came from inside on_next: handle it now
            self._drain()
            return False
        if end is not None:
            if end is _COMPLETE:
                signal_safely(subscriber, "on_complete")
            else:
                signal_safely(subscriber, "on_error", end)
            return False
        taken = signal_safely(subscriber, "on_next", item)
        if not taken:
            with self._lock:
                self._cancelled = True
        self._handed()
        if not taken:
            self._interrupt()
            self._drop()
            return False
        return True

    def _drop_locked(self) -> None:
        self._done = True
        self._subscriber = None  # rule 3.13
        self._untaken += len(self._items)  # fetched, never handed over: lost, not delivered
        self._items.clear()

    def _drop(self) -> None:
        with self._lock:
            self._drop_locked()
