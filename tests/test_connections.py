"""The tests' own servers close every connection, those made as they close included."""

from __future__ import annotations

import asyncio

from tests.connections import Connections


async def test_close_ends_served_connections_and_closes_one_made_after_at_once() -> None:
    connections = Connections()
    started = asyncio.Event()
    served = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        served += 1
        started.set()
        await asyncio.Event().wait()  # serves until cancelled

    server = await asyncio.start_server(
        lambda reader, writer: connections.serve(writer, handler(reader, writer)), "127.0.0.1", 0
    )
    address = server.sockets[0].getsockname()[:2]
    async with server:
        first, first_writer = await asyncio.open_connection(*address)
        await asyncio.wait_for(started.wait(), 5)
        await connections.close()
        assert await asyncio.wait_for(first.read(), 5) == b""  # its socket was closed
        # A client reconnecting while its server goes away: accepted, then closed unserved.
        late, late_writer = await asyncio.open_connection(*address)
        assert await asyncio.wait_for(late.read(), 5) == b""
        assert served == 1
        for writer in (first_writer, late_writer):
            writer.close()
            await writer.wait_closed()


async def test_close_cancels_a_task_started_while_the_others_are_cancelled() -> None:
    connections = Connections()
    spawned: list[asyncio.Task[None]] = []
    waiting = asyncio.Event()

    async def forever() -> None:
        await asyncio.Event().wait()

    async def spawning() -> None:
        try:
            waiting.set()
            await asyncio.Event().wait()
        finally:  # as a proxy's handler may start a pump on its way out
            spawned.append(asyncio.get_running_loop().create_task(forever()))
            connections.track(spawned[-1])

    connections.track(asyncio.get_running_loop().create_task(spawning()))
    await asyncio.wait_for(waiting.wait(), 5)
    await asyncio.wait_for(connections.close(), 5)
    assert len(spawned) == 1 and spawned[0].cancelled()
