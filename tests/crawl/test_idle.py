"""Idle workers: who is woken, timed waits, and no dead sleeper left behind."""

from __future__ import annotations

import asyncio

import pytest

from framework.crawl.idle import Idle

#: A bound on every test: a sleeper that is never woken fails the test instead of hanging it.
LIMIT = 5.0


def sleeping(idle: Idle) -> int:
    """How many sleepers ``idle`` keeps, dead ones included: what a leak would grow."""
    return len(idle._sleepers)


async def start_sleepers(
    idle: Idle, count: int, timeout: float | None = None
) -> list[asyncio.Task[None]]:
    """Start ``count`` sleepers one after the other, so the first has slept longest."""
    tasks, before = [], sleeping(idle)
    for _ in range(count):
        tasks.append(asyncio.create_task(idle.wait(timeout)))
        await asyncio.sleep(0)  # one loop turn: the task runs up to its wait and is queued
        assert sleeping(idle) == before + len(tasks)
    return tasks


async def first_done(tasks: list[asyncio.Task[None]]) -> set[asyncio.Task[None]]:
    """Wait (bounded) until some task is done; return all that are done by then."""
    async with asyncio.timeout(LIMIT):
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    return done


async def finish(tasks: list[asyncio.Task[None]], idle: Idle) -> None:
    idle.wake_all()
    async with asyncio.timeout(LIMIT):
        await asyncio.gather(*tasks)


async def test_wake_one_wakes_exactly_the_longest_sleeper() -> None:
    idle = Idle()
    first, second, third = tasks = await start_sleepers(idle, 3)
    idle.wake_one()
    assert sleeping(idle) == 2
    assert await first_done(tasks) == {first}
    idle.wake_one()
    assert await first_done([second, third]) == {second}
    assert not third.done() and sleeping(idle) == 1
    await finish(tasks, idle)


async def test_wake_all_wakes_every_sleeper() -> None:
    idle = Idle()
    tasks = await start_sleepers(idle, 3)
    idle.wake_all()
    assert sleeping(idle) == 0
    async with asyncio.timeout(LIMIT):
        await asyncio.gather(*tasks)


async def test_waking_nobody_is_harmless_and_not_remembered() -> None:
    idle = Idle()
    idle.wake_one()
    idle.wake_all()
    assert sleeping(idle) == 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(LIMIT):
        await idle.wait(0.01)  # the earlier wake-ups do not cut this wait short
    assert loop.time() - started >= 0.01


@pytest.mark.parametrize("timeout", [0.0, 0.01, 0.03])
async def test_a_timed_wait_returns_by_itself_and_leaves_no_sleeper(timeout: float) -> None:
    idle = Idle()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(LIMIT):
        await idle.wait(timeout)
    assert loop.time() - started >= timeout
    assert sleeping(idle) == 0


async def test_a_timed_wait_woken_early_returns_at_once() -> None:
    idle = Idle()
    loop = asyncio.get_running_loop()
    (task,) = await start_sleepers(idle, 1, timeout=LIMIT * 10)
    started = loop.time()
    idle.wake_one()
    async with asyncio.timeout(LIMIT):
        await task
    assert loop.time() - started < LIMIT
    assert sleeping(idle) == 0


async def test_a_deadline_wakes_the_longest_sleeper_whoever_asked() -> None:
    idle = Idle()
    (patient,) = await start_sleepers(idle, 1)
    (hasty,) = await start_sleepers(idle, 1, timeout=0.01)
    assert await first_done([patient, hasty]) == {patient}  # workers are alike
    assert sleeping(idle) == 1 and idle._alarm is None
    idle.wake_one()
    assert await first_done([hasty]) == {hasty}
    assert sleeping(idle) == 0


async def test_a_deadline_many_wait_for_wakes_one_of_them() -> None:
    idle = Idle()
    tasks = await start_sleepers(idle, 50, timeout=0.01)
    assert await first_done(tasks) == {tasks[0]}
    # No alarm is left, so nothing else can wake the others: they would all claim for nothing.
    assert idle._alarm is None and sleeping(idle) == 49
    await finish(tasks, idle)


async def test_only_the_earliest_deadline_is_kept() -> None:
    idle = Idle()
    loop = asyncio.get_running_loop()
    started = loop.time()
    tasks = await start_sleepers(idle, 1, timeout=LIMIT * 10)
    tasks += await start_sleepers(idle, 1, timeout=0.01)
    first = tasks[0]
    assert await first_done(tasks) == {first}
    assert loop.time() - started < LIMIT
    await finish(tasks, idle)


async def test_a_sleeper_woken_early_leaves_its_deadline_to_the_others() -> None:
    idle = Idle()
    (timed,) = await start_sleepers(idle, 1, timeout=0.01)
    (untimed,) = await start_sleepers(idle, 1)
    idle.wake_one()
    assert await first_done([timed, untimed]) == {timed}
    assert await first_done([untimed]) == {untimed}  # the alarm still rang
    assert sleeping(idle) == 0


async def test_a_cancelled_sleeper_is_removed() -> None:
    idle = Idle()
    first, second = await start_sleepers(idle, 2)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert sleeping(idle) == 1
    idle.wake_one()
    assert await first_done([second]) == {second}
    assert sleeping(idle) == 0


async def test_wake_one_skips_a_sleeper_cancelled_but_not_yet_removed() -> None:
    idle = Idle()
    first, second, third = tasks = await start_sleepers(idle, 3)
    first.cancel()  # its future is cancelled now; the task leaves the queue when it runs
    idle.wake_one()  # so this must pass over it to the next live sleeper
    assert await first_done([second, third]) == {second}
    with pytest.raises(asyncio.CancelledError):
        await first
    assert sleeping(idle) == 1
    await finish([second, third], idle)
    assert all(task.done() for task in tasks)


async def test_a_sleeper_woken_then_cancelled_before_it_runs_leaves_the_others_queued() -> None:
    idle = Idle()
    first, second, third = tasks = await start_sleepers(idle, 3)
    idle.wake_one()  # takes the first off the queue...
    first.cancel()  # ...and before it runs, its task is cancelled
    with pytest.raises(asyncio.CancelledError):
        await first
    assert sleeping(idle) == 2  # the two still asleep are still queued
    idle.wake_one()
    assert await first_done([second, third]) == {second}
    await finish(tasks[1:], idle)
