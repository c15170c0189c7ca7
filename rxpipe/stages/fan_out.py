"""Fan-out and fan-in around a stage: ``parallel`` and ``partition``.

Both run ``n`` copies of a stage (a :class:`~rxpipe.stages.Stage` or a fragment), each with its
own state, behind one stage of the flow. The copies are generic interpreters driven by this
stage's logic, so fan-out runs unchanged on every engine: work that a copy schedules (a
``map_async`` inside it) goes through this stage's ports, so copies really overlap on any
engine's event loop.

- ``parallel`` gives each item to a free copy; results merge as they come (``ordered=False``)
  or in input order (``ordered=True``: the outputs a copy makes while holding an item belong
  to that item).
- ``partition`` routes each item by ``hash(key(item)) % n``: items with the same key go to the
  same copy, one after another, so their order holds. Memory is bounded by the copies, never
  by the number of keys: an item whose copy is busy waits (the stage then stops pulling).
- ``parallel(..., executor=...)`` ships items (in batches of ``batch``) to any
  ``concurrent.futures.Executor``: each batch runs the stage afresh there, so stateful stages
  do not carry state across batches. Threads, processes and Dask (``client.get_executor()``)
  all fit; what goes to a process must pickle, and a failure to pickle is reported as such.
"""

from __future__ import annotations

import asyncio
import heapq
import pickle
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ClassVar, Final, NamedTuple, TypeVar

from rxpipe._core.clock import Timer
from rxpipe._core.stats import StageStats
from rxpipe.stages._base import Ports, Stage, StageLogic
from rxpipe.stages.callables import check_sync_callable
from rxpipe.stages.errors import Node, annotate, interpreter
from rxpipe.stages.simple import check_count

__all__ = ("BatchCounts", "Parallel", "Partition", "run_batch")

T = TypeVar("T")
R = TypeVar("R")

_NO_ITEM: Final[Any] = object()


def _nodes_of(stage: Stage[Any, Any]) -> tuple[Node, ...]:
    """The nodes a copy runs: a fragment's own nodes, or the stage alone."""
    nodes = getattr(stage, "nodes", None)
    if isinstance(nodes, tuple):
        if not nodes:
            raise ValueError("an empty fragment cannot be run in parallel: add a stage first")
        return nodes
    return (Node(stage.operator, stage),)


def _check_stage(stage: object, what: str) -> None:
    if not isinstance(stage, Stage):
        raise TypeError(f"{what} needs a Stage or a rxpipe.stage() fragment, got {stage!r}")


class BatchCounts(NamedTuple):
    """What the stage did not emit in one executor batch, by reason (for the Report)."""

    filtered: int
    errored: int
    dropped: int


def run_batch(nodes: tuple[Node, ...], items: list[Any]) -> tuple[list[Any], BatchCounts]:
    """Run ``nodes`` afresh over one batch: its outputs, and the items it did not emit.

    Module-level so an executor can pickle it; it runs in the worker (thread, process or
    Dask worker), on one generic interpreter per batch.
    """
    stats = [StageStats(n.name) for n in nodes]
    interp = interpreter(nodes, stats)
    interp.start()
    out: list[Any] = []
    it = iter(items)
    while True:
        interp.demand()
        if interp.output:
            out.extend(interp.output)
            interp.output.clear()
            continue
        if interp.finished:
            break
        if interp.scheduled:
            raise TypeError("a stage run on an executor cannot schedule async work")
        if not interp.input_wanted:
            raise RuntimeError("a stage neither pushed nor pulled: it breaks the port protocol")
        item = next(it, _NO_ITEM)
        if item is _NO_ITEM:
            interp.feed_end()
        else:
            interp.feed(item)
    interp.stop()
    if interp.error is not None:
        raise interp.error
    return out, BatchCounts(
        sum(st.filtered for st in stats),
        sum(st.errored for st in stats),
        sum(st.dropped for st in stats),
    )


@dataclass(frozen=True, slots=True)
class Parallel(Stage[T, R]):
    """Blueprint of :meth:`rxpipe.Flow.parallel`."""

    n: int
    stage: Stage[T, R]
    ordered: bool = False
    executor: Executor | None = None
    batch: int = 1
    operator: ClassVar[str] = "parallel"

    def __post_init__(self) -> None:
        check_count(self.n, "parallel(n, stage): n", minimum=1)
        _check_stage(self.stage, "parallel(n, stage)")
        _nodes_of(self.stage)
        if not isinstance(self.ordered, bool):
            raise TypeError(f"parallel(ordered=) must be a bool, got {self.ordered!r}")
        if self.executor is not None and not isinstance(self.executor, Executor):
            raise TypeError(
                "parallel(executor=) needs a concurrent.futures.Executor (threads, processes, "
                f"or a Dask client's get_executor()), got {self.executor!r}"
            )
        check_count(self.batch, "parallel(batch=)", minimum=1)
        if self.batch > 1 and self.executor is None:
            raise ValueError("parallel(batch=) applies to executors: pass executor= too")

    @property
    def is_async(self) -> bool:  # type: ignore[override]
        return self.executor is not None or any(n.stage.is_async for n in _nodes_of(self.stage))

    def create_logic(self, ports: Ports[T, R]) -> StageLogic[T, R]:
        if self.executor is not None:
            return _ExecutorLogic(ports, self)
        return _CopiesLogic(ports, _nodes_of(self.stage), self.n, self.ordered, None)


@dataclass(frozen=True, slots=True)
class Partition(Stage[T, R]):
    """Blueprint of :meth:`rxpipe.Flow.partition`."""

    key: Callable[[T], Hashable]
    n: int
    stage: Stage[T, R]
    operator: ClassVar[str] = "partition"
    user_code: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_sync_callable(self.key, "partition(key, n, stage): key", "a key must be sync")
        check_count(self.n, "partition(key, n, stage): n", minimum=1)
        _check_stage(self.stage, "partition(key, n, stage)")
        _nodes_of(self.stage)

    @property
    def is_async(self) -> bool:  # type: ignore[override]
        return any(n.stage.is_async for n in _nodes_of(self.stage))

    def create_logic(self, ports: Ports[T, R]) -> StageLogic[T, R]:
        return _CopiesLogic(ports, _nodes_of(self.stage), self.n, False, self.key)


class _CopiesLogic(StageLogic[Any, Any]):
    """``n`` interpreters behind one stage: routes items in, merges outputs out.

    In ordered mode a copy takes a new item only once it is idle (it wants input, has no
    output and no work running), so every output it makes belongs to the item it holds.

    An event costs O(log n) at most, never O(n): a copy changes only when this logic calls
    it (start, feed, demand, feed_end, the end of its work), so the merge loop looks only at
    the copies it called since it last looked (``dirty``) and keeps the rest as it goes: the
    outputs it holds (``buffered``), the copies that finished, the copies that may want a
    demand (``needy``) or an end (``endable``), the copies that may take input (two heaps
    around the round-robin ``turn``), and which copy holds which input number (``owner``).
    A candidate is checked again when it is used, since it may have changed meanwhile; it
    changed only by a call, which makes it a candidate again. Where the loop acts on several
    copies at once it does so in index order, as a scan over every copy would.
    """

    __slots__ = (
        "ahead",
        "behind",
        "buffered",
        "copies",
        "counted",
        "dirty",
        "done",
        "endable",
        "failed_at",
        "groups",
        "holding",
        "key",
        "needy",
        "next_seq",
        "ordered",
        "owner",
        "pending",
        "queued",
        "ready",
        "seq",
        "seq_in",
        "stopped",
        "turn",
        "upstream_done",
        "work",
    )

    def __init__(
        self,
        ports: Ports[Any, Any],
        nodes: tuple[Node, ...],
        n: int,
        ordered: bool,
        key: Callable[[Any], Hashable] | None,
    ) -> None:
        super().__init__(ports)
        name = ports.stats.name
        self.copies = [
            interpreter(nodes, [StageStats(f"{name}[{i}]/{nd.name}") for nd in nodes])
            for i in range(n)
        ]
        self.ordered = ordered
        self.key = key
        self.pending: Any = _NO_ITEM  # the item waiting for a copy
        self.holding = -1  # partition: the copy the pending item must go to
        self.ready: deque[Any] = deque()  # unordered: outputs to emit
        self.groups: dict[int, deque[Any]] = {}  # ordered: outputs per input number
        self.buffered = 0  # outputs in ready and groups
        self.seq_in = [-1] * n  # ordered: the input number each copy holds
        self.owner: dict[int, int] = {}  # ordered: input number -> the copy holding it
        self.work = [0] * n  # work each copy has running
        self.seq = 0  # the next input's number
        self.next_seq = 0  # ordered: the next input number to emit outputs of
        self.turn = 0  # parallel: where the round robin looks for a free copy first
        self.upstream_done = False
        self.stopped = False
        self.failed_at = -1  # the copy whose error failed the stage
        self.counted = [False] * n  # copies seen finished
        self.done = 0  # how many
        self.dirty: set[int] = set()  # copies called since the merge loop last looked
        self.needy: set[int] = set()  # copies that may want a demand
        self.endable: set[int] = set()  # copies that may be idle with their input open
        # copies that may take input: heaps of those at or after `turn`, and before it
        self.ahead: list[int] = []
        self.behind: list[int] = []
        self.queued = [False] * n  # whether a copy is in ahead or behind

    # -- callbacks -------------------------------------------------------------------------------
    def pre_start(self) -> None:
        for c in self.copies:
            c.start()
        self.dirty.update(range(len(self.copies)))
        self._pump()

    def on_pull(self) -> None:
        self._pump()

    def on_push(self) -> None:
        item = self.ports.grab()
        if self.key is not None:
            self.holding = hash(self.key(item)) % len(self.copies)
        self.pending = item
        self._pump()

    def on_upstream_finish(self) -> None:
        self.upstream_done = True
        self._pump()

    def on_downstream_finish(self) -> None:
        self.stopped = True  # work still ending later must not start the merge loop again
        for c in self.copies:
            if not c.finished:
                c.cancel()
        self.ports.complete()

    def post_stop(self) -> None:
        # The copies' own accounting (items they filtered, failed on, or held when stopped)
        # belongs to this stage in the Report: fold it in.
        stats = self.ports.stats
        for c in self.copies:
            c.stop()
            for inner in c.stats:
                stats.filtered += inner.filtered
                stats.errored += inner.errored
                stats.dropped += inner.dropped
                stats.lost += inner.lost

    def held_items(self) -> int:
        # what the copies still hold (their output included) is theirs: each copy's stop
        # counts it, and post_stop folds it in
        return self.buffered + (self.pending is not _NO_ITEM)

    # -- helpers ---------------------------------------------------------------------------------
    def _idle(self, i: int) -> bool:
        """Whether copy ``i`` made every output it can without another input item.

        It was asked for output and, with nothing running, could only answer by asking for
        input (a stage that pulls ahead, like ``map_async``, wants input early: that alone
        does not mean its item's outputs are all out).
        """
        c = self.copies[i]
        return (
            c.input_wanted
            and c.wants_output()
            and not c.output
            and not c.scheduled
            and self.work[i] == 0
        )

    def _takes_input(self, i: int) -> bool:
        c = self.copies[i]
        if c.finished or not c.input_wanted:
            return False
        return self._idle(i) if self.ordered else True

    def _forward_work(self, i: int) -> None:
        """Hand work a copy scheduled to this stage's ports; its end goes back to the copy."""
        copy = self.copies[i]
        while copy.scheduled:
            index, work, done = copy.scheduled.popleft()
            counted = type(work) is not Timer  # a timer may be cancelled: never called back
            if counted:
                self.work[i] += 1

            def back(
                result: Any,
                error: BaseException | None,
                i: int = i,
                index: int = index,
                done: Any = done,
                counted: bool = counted,
            ) -> None:
                if counted:
                    self.work[i] -= 1
                self.dirty.add(i)
                self.copies[i].work_done(index, done, result, error)
                self._pump()

            self.ports.schedule(work, back)

    def _collect(self) -> bool:
        """Take in what the copies called since last time did: forward the work they
        scheduled, move their outputs to the merge buffer, note what they now want.

        False if a copy failed (the stage fails with its error), now or before: then, as a
        scan in index order stopping at the failed copy would, only the copies before it are
        looked at.
        """
        dirty, failed_at = self.dirty, self.failed_at
        if dirty:
            order = sorted(dirty) if len(dirty) > 1 else list(dirty)
            dirty.clear()
            for pos, i in enumerate(order):
                if 0 <= failed_at < i:
                    dirty.update(order[pos:])
                    break
                c = self.copies[i]
                self._forward_work(i)
                if c.output:
                    self.buffered += len(c.output)
                    if self.ordered:
                        self.groups.setdefault(self.seq_in[i], deque()).extend(c.output)
                    else:
                        self.ready.extend(c.output)
                    c.output.clear()
                if c.finished and c.error is not None:
                    self.ports.fail(c.error)
                    self.failed_at = i
                    dirty.update(order[pos + 1 :])
                    return False
                self._note(i)
        return self.failed_at < 0

    def _note(self, i: int) -> None:
        """Record what copy ``i``, just looked at, may want next (checked again when used)."""
        c = self.copies[i]
        if c.finished:
            if not self.counted[i]:
                self.counted[i] = True
                self.done += 1
            return
        if not c.wants_output():
            self.needy.add(i)
        if not self.queued[i] and self._takes_input(i):
            self.queued[i] = True
            heapq.heappush(self.ahead if i >= self.turn else self.behind, i)
        if not c.input_closed and self._idle(i):
            self.endable.add(i)

    def _ask(self, i: int) -> bool:
        """Demand output of copy ``i`` if it waits for a demand; True if that made progress."""
        c = self.copies[i]
        if c.finished or c.output or c.wants_output():
            return False
        c.demand()
        # progress only if the copy could take the demand (a cancelled one can't)
        if c.wants_output() or c.output or c.finished:
            self.dirty.add(i)
            return True
        return False

    def _ask_copies(self) -> bool:
        """Ask copies for output while the merge buffer is small; in ordered mode always ask
        the copy whose outputs are due next, or it could wait on a full buffer."""
        needy = self.needy
        if not needy:
            return False
        if self.buffered < len(self.copies):
            order = sorted(needy) if len(needy) > 1 else list(needy)
            needy.clear()
            asked = False
            for i in order:
                asked |= self._ask(i)
            return asked
        if self.ordered:
            due = self.owner.get(self.next_seq, -1)
            if due in needy:
                needy.discard(due)
                return self._ask(due)
        return False

    def _next_taker(self) -> int:
        """The first copy from ``turn`` on (round robin) that takes input, or -1."""
        ahead, behind, queued = self.ahead, self.behind, self.queued
        while ahead and not self._takes_input(ahead[0]):
            queued[heapq.heappop(ahead)] = False
        if ahead:
            return ahead[0]
        while behind and not self._takes_input(behind[0]):
            queued[heapq.heappop(behind)] = False
        return behind[0] if behind else -1

    def _group_done(self, s: int) -> bool:
        """Ordered: whether every output of input ``s`` has been made."""
        i = self.owner.get(s, -1)
        if i < 0:
            return True  # its copy moved on, which it does only when idle
        return self.copies[i].finished or self._idle(i)

    def _emit(self) -> bool:
        """Push one output if downstream waits and one is due; True if it pushed."""
        if not self.ports.can_push():
            return False
        if not self.ordered:
            if self.ready:
                self.buffered -= 1
                self.ports.push(self.ready.popleft())
                return True
            return False
        while self.next_seq < self.seq:
            group = self.groups.get(self.next_seq)
            if group:
                self.buffered -= 1
                self.ports.push(group.popleft())
                return True
            if not self._group_done(self.next_seq):
                return False
            self.groups.pop(self.next_seq, None)
            self.next_seq += 1
        return False

    def _unroutable(self) -> bool:
        if self.holding >= 0:
            return self.copies[self.holding].finished
        return self.done == len(self.copies)

    def _route(self) -> bool:
        """Give the pending item to a copy that takes it; True if it did."""
        if self.pending is _NO_ITEM:
            return False
        if self.holding >= 0:  # partition: the keyed copy or none (the turn plays no part)
            choice = self.holding if self._takes_input(self.holding) else -1
            if choice < 0:
                return False
        else:
            choice = self._next_taker()
            if choice < 0:
                return False
            # the chosen copy leaves its heap; the turn moves past it, and when the turn
            # wraps or the choice came from behind it, what was behind is now ahead
            from_ahead = bool(self.ahead)
            heapq.heappop(self.ahead if from_ahead else self.behind)
            self.queued[choice] = False
            self.turn = (choice + 1) % len(self.copies)
            if not from_ahead or self.turn == 0:
                self.ahead, self.behind = self.behind, self.ahead
        item, self.pending, self.holding = self.pending, _NO_ITEM, -1
        before = self.seq_in[choice]
        if self.owner.get(before) == choice:
            del self.owner[before]
        self.seq_in[choice] = self.seq
        self.owner[self.seq] = choice
        self.seq += 1
        self.dirty.add(choice)
        self.copies[choice].feed(item)
        return True

    def _end_copies(self) -> bool:
        """Upstream ended: end the input of every idle copy (in index order); True if any."""
        endable = self.endable
        if not endable:
            return False
        order = sorted(endable) if len(endable) > 1 else list(endable)
        endable.clear()
        ended = False
        for i in order:
            c = self.copies[i]
            if not c.input_closed and not c.finished and self._idle(i):
                self.dirty.add(i)
                c.feed_end()
                ended = True
        return ended

    # -- the merge loop --------------------------------------------------------------------------
    def _pump(self) -> None:
        if self.stopped:
            return
        ports, n = self.ports, len(self.copies)
        while True:
            if not self._collect():
                return
            if self._emit():
                continue
            if self._ask_copies():
                continue
            if self._route():
                continue
            if self.pending is not _NO_ITEM and self._unroutable():
                # its copy (or every copy) already completed, as a take inside it may: the
                # item is received but never processed, by the stage's choice
                self.pending, self.holding = _NO_ITEM, -1
                ports.stats.filtered += 1
                continue
            if not self.upstream_done and self.done == n:
                self.upstream_done = True  # no copy will take more: stop upstream
                ports.cancel()
                continue
            if self.upstream_done and self.pending is _NO_ITEM:
                if self._end_copies():
                    continue
                if self.done == n and self.buffered == 0:
                    ports.complete()
                return
            if (
                self.pending is _NO_ITEM
                and not ports.has_pulled()
                and not ports.is_upstream_closed()
                and self.buffered < 4 * n
                and self._next_taker() >= 0
            ):
                ports.pull()
            return


class _ExecutorLogic(StageLogic[Any, Any]):
    """``parallel(n, stage, executor=...)``: batches go to the executor, ``n`` at a time."""

    __slots__ = ("batch", "in_flight", "nodes", "running", "spec", "upstream_done", "waiting")

    def __init__(self, ports: Ports[Any, Any], spec: Parallel[Any, Any]) -> None:
        super().__init__(ports)
        self.spec = spec
        self.nodes = _nodes_of(spec.stage)
        self.batch: list[Any] = []
        self.running = 0
        self.in_flight = 0  # items in batches submitted and not back yet
        # ordered: slots in input order; unordered: finished slots. A slot: [outcome, items]
        self.waiting: deque[list[Any]] = deque()
        self.upstream_done = False

    def held_items(self) -> int:
        finished = sum(len(s[0]) for s in self.waiting if s[0] is not _NO_ITEM)
        return len(self.batch) + self.in_flight + finished

    def pre_start(self) -> None:
        self.ports.pull()

    def on_pull(self) -> None:
        self._emit()

    def on_push(self) -> None:
        self.batch.append(self.ports.grab())
        if len(self.batch) >= self.spec.batch:
            self._submit()
        self._emit()

    def on_upstream_finish(self) -> None:
        self.upstream_done = True
        if self.batch:
            self._submit()
        self._emit()

    def _submit(self) -> None:
        items, self.batch = self.batch, []
        slot: list[Any] = [_NO_ITEM, items]
        self.running += 1
        self.in_flight += len(items)
        if self.spec.ordered:
            self.waiting.append(slot)
        executor, nodes = self.spec.executor, self.nodes
        assert executor is not None

        async def work() -> tuple[list[Any], BatchCounts]:
            future = executor.submit(run_batch, nodes, items)
            return await asyncio.wrap_future(future)

        self.ports.schedule(work, lambda r, e: self._finished(slot, r, e))

    def _finished(self, slot: list[Any], result: Any, error: BaseException | None) -> None:
        self.running -= 1
        if error is not None:
            self.in_flight -= len(slot[1])
            self.ports.stats.errored += len(slot[1])
            if _is_pickling_error(error):
                cause, error = (
                    error,
                    TypeError(
                        f"parallel(executor=...): stage {self.ports.stats.name!r} could not be "
                        f"sent to the executor ({type(error).__name__}: {error}); functions run "
                        "in other processes must be defined at module level (no lambdas or "
                        "closures), or use an executor that pickles with cloudpickle (loky, Dask)"
                    ),
                )
                error.__cause__ = cause
            if isinstance(error, Exception):
                annotate(error, self.ports.stats.name)
            self.ports.fail(error)
            return
        self.in_flight -= len(slot[1])
        outputs, counts = result
        stats = self.ports.stats
        stats.filtered += counts.filtered
        stats.errored += counts.errored
        stats.dropped += counts.dropped
        slot[0] = deque(outputs)
        if not self.spec.ordered:
            self.waiting.append(slot)
        self._emit()

    def _emit(self) -> None:
        ports, waiting = self.ports, self.waiting
        while waiting and waiting[0][0] is not _NO_ITEM and not waiting[0][0]:
            waiting.popleft()  # a batch whose outputs were all emitted (or none)
        if ports.can_push() and waiting and waiting[0][0] is not _NO_ITEM:
            ports.push(waiting[0][0].popleft())
            while waiting and waiting[0][0] is not _NO_ITEM and not waiting[0][0]:
                waiting.popleft()
        if self.upstream_done or ports.is_upstream_closed():
            if self.running == 0 and not waiting and not self.batch:
                ports.complete()
            return
        # n batches run and n more wait in the executor's queue, so no worker idles while a
        # result travels back; ordered mode also keeps finished batches waiting their turn
        ahead = 2 * self.spec.n
        window = 4 * self.spec.n if self.spec.ordered else ahead
        in_window = len(waiting) if self.spec.ordered else self.running + len(waiting)
        if self.running < ahead and in_window < window and not ports.has_pulled():
            ports.pull()


def _is_pickling_error(error: BaseException) -> bool:
    if isinstance(error, pickle.PicklingError):
        return True
    text = str(error)
    return isinstance(error, AttributeError | TypeError) and (
        "pickle" in text or "Can't get local object" in text
    )
