"""One warm Chromium per process and a small pool of reusable pages.

Why this shape: launching Chromium costs about a second and a fresh browser
context about 0.2-0.5 s on a small VPS, while a screenshot of a simple page
takes ~0.15 s; so the browser is launched once at startup and each of the
`screenshot_concurrency` slots keeps a context + page that is reused (cookies
cleared, blank page between renders) and replaced after `MAX_USES` renders or
after anything went wrong (timeout, crash, error). The slots are an
`asyncio.Queue`: at most N pages render at once and a burst waits its turn,
never opening more tabs than the two cores can carry. If Chromium dies, the
next request relaunches it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright

from api.screenshot.egress import EgressProxy
from api.screenshot.netguard import BlockLog, Resolver, make_route_handler, system_resolver
from imgkit.errors import ConfigError, ImgKitError, ServiceUnavailable
from imgkit.logging import get_logger
from imgkit.settings import Settings

log = get_logger(__name__)

#: Renders a page serves before its context is thrown away (bounds leaks and shared state).
MAX_USES = 50

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",
    "--dns-prefetch-disable",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-color-profile=srgb",
    # WebRTC could reach internal addresses without going through the proxy.
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
]


@dataclass
class Slot:
    """One reusable page (in its own context) bound to the browser generation that made it."""

    index: int
    context: BrowserContext | None = None
    page: Page | None = None
    generation: int = -1
    uses: int = 0
    broken: bool = False
    blocks: BlockLog = field(default_factory=BlockLog)

    async def discard(self) -> None:
        if self.context is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.context.close(), 5)
        self.context = None
        self.page = None
        self.uses = 0
        self.broken = False


class BrowserPool:
    """Owns Playwright, the browser, the egress proxy and the page slots."""

    def __init__(self, settings: Settings, *, resolver: Resolver = system_resolver) -> None:
        self.settings = settings
        self.resolver = resolver
        self.proxy = EgressProxy(allow_private=settings.fetch_allow_private, resolver=resolver)
        self._pw: Playwright | None = None
        self._browser: Browser | None = None
        self._generation = 0
        self._launch_lock = asyncio.Lock()
        self._slots: asyncio.Queue[Slot] = asyncio.Queue()
        for i in range(settings.screenshot_concurrency):
            self._slots.put_nowait(Slot(i))
        self.launches = 0
        self._recycling: set[asyncio.Task[None]] = set()

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the proxy and launch Chromium now, so the first request does not pay for it."""
        path = self.settings.chromium_path
        if not path.exists():
            raise ConfigError(f"Chromium not found at {path}: install it (`apt-get install chromium`) "
                              "or set IMGKIT_CHROMIUM_PATH", path=str(path))
        await self.proxy.start()
        self._pw = await async_playwright().start()
        await self._ensure_browser()
        slots = [self._slots.get_nowait() for _ in range(self._slots.qsize())]
        try:
            await asyncio.gather(*(self._warm(slot) for slot in slots))
        finally:
            for slot in slots:
                self._slots.put_nowait(slot)

    async def stop(self) -> None:
        if self._recycling:
            await asyncio.wait(list(self._recycling), timeout=10)
        while not self._slots.empty():
            await self._slots.get_nowait().discard()
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._browser.close(), 10)
            self._browser = None
        if self._pw is not None:
            with contextlib.suppress(Exception):
                await self._pw.stop()
            self._pw = None
        await self.proxy.stop()

    @property
    def healthy(self) -> bool:
        return self._browser is not None and self._browser.is_connected()

    async def _ensure_browser(self) -> Browser:
        if self._browser is not None and self._browser.is_connected():
            return self._browser
        async with self._launch_lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            if self._pw is None:
                raise ServiceUnavailable("screenshot service is not started")
            if self._browser is not None:
                log.warning("chromium disconnected; relaunching")
                with contextlib.suppress(Exception):
                    await self._browser.close()
            args = [*CHROMIUM_ARGS, f"--proxy-server=http://127.0.0.1:{self.proxy.port}",
                    "--proxy-bypass-list=<-loopback>"]
            try:
                self._browser = await self._pw.chromium.launch(
                    executable_path=str(self.settings.chromium_path), args=args, headless=True,
                    timeout=60_000)
            except Exception as exc:
                self._browser = None
                raise ServiceUnavailable(f"cannot launch Chromium at {self.settings.chromium_path}: "
                                         f"{exc}") from exc
            self._generation += 1
            self.launches += 1
            log.info("chromium launched", extra={"version": self._browser.version,
                                                 "generation": self._generation})
            return self._browser

    # --- pages ---------------------------------------------------------------------------
    async def _prepare(self, slot: Slot, width: int, height: int) -> Page:
        browser = await self._ensure_browser()
        if (slot.page is None or slot.broken or slot.generation != self._generation
                or slot.uses >= MAX_USES or slot.page.is_closed()):
            await slot.discard()
            context = await browser.new_context(
                viewport={"width": width, "height": height},
                service_workers="block",  # their fetches would bypass page.route
                java_script_enabled=True,
                accept_downloads=False,
                ignore_https_errors=False,
                user_agent=None,
            )
            page = await context.new_page()
            await page.route("**/*", make_route_handler(
                allow_private=self.settings.fetch_allow_private, resolver=self.resolver,
                block_log=slot.blocks))

            def _crashed(_: Any) -> None:
                slot.broken = True

            page.on("crash", _crashed)
            slot.context, slot.page, slot.generation = context, page, self._generation
        else:
            assert slot.context is not None
            await slot.context.clear_cookies()
            await slot.page.set_viewport_size({"width": width, "height": height})
        slot.uses += 1
        slot.blocks.blocked.clear()
        assert slot.page is not None
        return slot.page

    @contextlib.asynccontextmanager
    async def page(self, width: int, height: int) -> AsyncIterator[tuple[Page, BlockLog]]:
        """Borrow a page sized `width` x `height`; waits (bounded) when all slots are busy.

        The slot is kept for reuse only when the render ended normally; a timeout or
        any unexpected error throws its context away, since the page may be stuck.
        """
        try:
            slot = await asyncio.wait_for(self._slots.get(), self.settings.screenshot_timeout)
        except TimeoutError:
            raise ServiceUnavailable("screenshot service is busy: every page is rendering; retry later",
                                     code="busy") from None
        keep = False
        try:
            page = await self._prepare(slot, width, height)
            yield page, slot.blocks
            keep = True
        except ImgKitError as exc:
            keep = exc.status < 500  # a refused URL leaves the page healthy; a timeout may not
            raise
        finally:
            # Resetting (or replacing) the page happens after the answer is sent, not before.
            task = asyncio.get_running_loop().create_task(self._recycle(slot, keep))
            self._recycling.add(task)
            task.add_done_callback(self._recycling.discard)

    async def _recycle(self, slot: Slot, keep: bool) -> None:
        """Blank a healthy page (stops its timers and requests), or replace a suspect one; then free it."""
        try:
            if keep and not slot.broken and slot.page is not None:
                try:
                    await asyncio.wait_for(slot.page.goto("about:blank"), 5)
                except Exception:
                    await slot.discard()
            else:
                await slot.discard()
            if slot.page is None and self.healthy:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._warm(slot), 10)
        finally:
            self._slots.put_nowait(slot)

    async def _warm(self, slot: Slot) -> None:
        """Create the slot's context and page ahead of need (a context costs 0.2-0.5 s)."""
        await self._prepare(slot, 1280, 800)
        slot.uses = 0
