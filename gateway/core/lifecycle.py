"""Component lifetimes: start, a background loop, close — entered in one AsyncExitStack.

A component takes part by having any of `start()`, `run_background()` (a loop the gateway
runs as a task while it serves) and `close()`. `GatewayApp` lists its components once, in
start order; they are closed in the reverse order, also when a later one fails to start.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class Startable(Protocol):
    async def start(self) -> None: ...


@runtime_checkable
class Looping(Protocol):
    async def run_background(self) -> None: ...


@runtime_checkable
class Closable(Protocol):
    async def close(self) -> None: ...


@contextlib.asynccontextmanager
async def running(component: object) -> AsyncIterator[None]:
    """`component` started, its background loop running, until the block ends; then the
    loop is cancelled and the component closed."""
    if isinstance(component, Startable):
        await component.start()
    loop = (
        asyncio.create_task(component.run_background()) if isinstance(component, Looping) else None
    )
    try:
        yield
    finally:
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        if isinstance(component, Closable):
            await component.close()
