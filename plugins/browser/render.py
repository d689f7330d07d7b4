"""Render one page in a tab: load it, wait, act on it, scroll it, and take what it shows."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .options import PageOptions, Step

if TYPE_CHECKING:
    from playwright.async_api import Page

__all__ = ["Deadline", "Rendered", "render"]

#: Scroll to the bottom; return the height scrolled to.
_SCROLL = """() => {
    const height = document.documentElement.scrollHeight;
    window.scrollTo(0, height);
    return height;
}"""
_GREW = "height => document.documentElement.scrollHeight > height"


class Deadline:
    """The time one render has left, and what it is waiting for (for the error)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = asyncio.get_running_loop().time() + seconds
        self.waiting_for = "the page to load"

    def left(self) -> float:
        """Seconds left, never below a millisecond (Playwright reads 0 as no limit)."""
        return max(0.001, self._end - asyncio.get_running_loop().time())

    def ms(self) -> float:
        """Milliseconds left, for Playwright's ``timeout=``."""
        return self.left() * 1000

    def step(self, what: str) -> None:
        """Say what the render waits for now."""
        self.waiting_for = what


@dataclass(frozen=True)
class Rendered:
    """What a tab showed once it was ready."""

    html: str
    #: The URL the tab ended on (a script may have navigated away).
    url: str
    screenshot: bytes | None = None
    pdf: bytes | None = None


async def render(page: Page, url: str, options: PageOptions, deadline: Deadline) -> Rendered:
    """Load ``url`` in ``page`` as ``options`` say and return what it shows."""
    deadline.step(f"the page to reach the load state {options.wait_until!r}")
    await page.goto(url, wait_until=options.wait_until, timeout=deadline.ms())
    if options.wait_for is not None:
        await _wait_for(page, options.wait_for, deadline)
    for step in options.actions:
        await _act(page, step, options, deadline)
    if options.scroll:
        await _scroll(page, options.scroll, options.scroll_wait, deadline)
    if options.wait:
        deadline.step(f"the end of the wait of {options.wait:g}s")
        await asyncio.sleep(min(options.wait, deadline.left()))
    deadline.step("the page's HTML")
    html = await page.content()
    deadline.step("the screenshot")
    shot = (
        await page.screenshot(full_page=True, timeout=deadline.ms()) if options.screenshot else None
    )
    deadline.step("the PDF")
    pdf = await page.pdf() if options.pdf else None
    return Rendered(html, page.url, shot, pdf)


async def _wait_for(page: Page, selector: str, deadline: Deadline) -> None:
    deadline.step(f"{selector!r} to be on the page")
    await page.wait_for_selector(selector, state="attached", timeout=deadline.ms())


async def _act(page: Page, step: Step, options: PageOptions, deadline: Deadline) -> None:
    if step.kind == "click":
        deadline.step(f"a click on {step.value!r}")
        await page.click(step.value, timeout=deadline.ms())
    elif step.kind == "wait_for":
        await _wait_for(page, step.value, deadline)
    elif step.kind == "scroll":
        await _scroll(page, step.value, options.scroll_wait, deadline)
    elif step.kind == "wait":
        deadline.step(f"the end of the wait of {step.value:g}s")
        await asyncio.sleep(min(step.value, deadline.left()))
    elif step.kind == "evaluate":
        deadline.step("the script of an evaluate action")
        await page.evaluate(step.value)


async def _scroll(page: Page, times: int, wait: float, deadline: Deadline) -> None:
    """Scroll to the bottom up to ``times`` times, while the page grows each time."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    for n in range(times):
        deadline.step(f"scroll {n + 1} of {times}")
        height = await page.evaluate(_SCROLL)
        if wait <= 0:
            continue
        left = deadline.left()
        try:
            await page.wait_for_function(
                _GREW, arg=height, polling=100, timeout=min(wait, left) * 1000
            )
        except PlaywrightTimeout:
            if wait < left:
                return  # the page stopped growing: nothing more to load
            raise
