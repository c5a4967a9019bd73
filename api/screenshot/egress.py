"""A tiny filtering forward proxy that every Chromium connection goes through.

Why, when `page.route` already checks requests: Playwright's routing does not
see redirect hops (a public image that answers `302 Location: http://10.0.0.5/`
would be followed without asking us — measured with Playwright 1.65), nor
WebSocket handshakes, nor fetches made by service workers; and Chromium does
its own DNS lookup after our check, so a hostname that answers public then
private (DNS rebinding) would slip through. Chromium is started with
`--proxy-server` pointing here and `--proxy-bypass-list=<-loopback>` (so even
loopback goes through the proxy); this proxy resolves the host, checks every
address with the same rule as `netguard`, and connects to the address it
checked. Refused requests get `403` (plain HTTP) or a refused `CONNECT`.

It understands just enough HTTP: `CONNECT host:port` (HTTPS and WebSockets
over TLS) is tunnelled; an absolute-form request (`GET http://host/path`) is
rewritten to origin form with `Connection: close`, forwarded, and the socket
is then piped both ways until either side closes — one request per proxy
connection, so Chromium cannot reuse an approved connection for another host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

from api.screenshot.netguard import Resolver, check_host, system_resolver
from imgkit.logging import get_logger

log = get_logger(__name__)

_MAX_HEAD = 64 * 1024
_CONNECT_TIMEOUT = 10.0


class EgressProxy:
    """Loopback proxy for one browser; `allow_private` mirrors `settings.fetch_allow_private`."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = system_resolver) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.blocked: list[str] = []  # recent refusals, for logs and tests (bounded)
        self.forwarded = 0            # connections let through (tests check the browser uses the proxy)

    @property
    def port(self) -> int:
        assert self._server is not None, "proxy not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("egress proxy error")
        finally:
            if task is not None:
                self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _refuse(self, writer: asyncio.StreamWriter, target: str, reason: str,
                      code: str | None = None) -> None:
        # A name that does not resolve is routine (Chromium's own background traffic, dead links);
        # a refused address is what an attack looks like.
        level = logging.INFO if code == "fetch_dns_error" else logging.WARNING
        log.log(level, "screenshot egress blocked", extra={"target": target, "reason": reason})
        self.blocked.append(target)
        del self.blocked[:-100]
        body = f"blocked by ImgKit: {reason}\n".encode()
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                     b"X-ImgKit-Blocked: 1\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        with contextlib.suppress(Exception):
            await writer.drain()

    async def _open(self, host: str, port: int, writer: asyncio.StreamWriter, target: str,
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        verdict = await check_host(host, port, allow_private=self.allow_private, resolver=self.resolver)
        if not verdict.allowed:
            await self._refuse(writer, target, verdict.reason or "blocked", verdict.code)
            return None
        last: Exception | None = None
        for addr in verdict.addresses:  # connect to what was checked, never re-resolve
            try:
                opened = await asyncio.wait_for(asyncio.open_connection(str(addr), port), _CONNECT_TIMEOUT)
                self.forwarded += 1
                return opened
            except (OSError, TimeoutError) as exc:
                last = exc
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        log.info("screenshot egress connect failed", extra={"target": target, "error": str(last)})
        return None

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_HEAD:
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        if method.upper() == "CONNECT":
            host, _, port_text = target.rpartition(":")
            opened = await self._open(host.strip("[]"), int(port_text), writer, target)
            if opened is None:
                return
            up_reader, up_writer = opened
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await _pipe_both(reader, writer, up_reader, up_writer, b"")
            return
        parts = urlsplit(target)
        if parts.scheme.lower() != "http" or not parts.hostname:
            await self._refuse(writer, target, "only absolute http:// requests are proxied")
            return
        port = parts.port or 80
        opened = await self._open(parts.hostname, port, writer, target)
        if opened is None:
            return
        up_reader, up_writer = opened
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = [line for line in lines[1:] if line and line.split(":", 1)[0].strip().lower()
                   not in {"proxy-connection", "connection", "keep-alive", "proxy-authorization"}]
        new_head = "\r\n".join([f"{method} {path} {version}", *headers, "Connection: close", "", ""])
        await _pipe_both(reader, writer, up_reader, up_writer, new_head.encode("latin-1"))


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            dst.close()


async def _pipe_both(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                     up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter, first: bytes) -> None:
    """Shuttle bytes until one side closes; closing one direction ends the other."""
    if first:
        up_w.write(first)
        await up_w.drain()
    tasks = [asyncio.ensure_future(_pipe(client_r, up_w)), asyncio.ensure_future(_pipe(up_r, client_w))]
    try:
        _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # the response finished (or the client gave up): give the other side a moment, then stop
        if pending:
            await asyncio.wait(pending, timeout=1.0)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            up_w.close()
