"""A corporate HTTPS proxy for tests: HTTP CONNECT on 127.0.0.1 that tunnels only named hosts.

`ConnectProxy({"graph.microsoft.com": 8443})` tunnels `CONNECT graph.microsoft.com:443` to
127.0.0.1:8443 (the Microsoft simulator, whose certificate names the real hosts) and answers
403 to every other target, so nothing leaves the machine. Every CONNECT target is recorded, so a
test can tell which real host names the bot asked for. Plain (non-CONNECT) requests get 405.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

_HEAD_LIMIT = 16 * 1024  # bytes of request line and headers
_HEAD_TIMEOUT = 10.0  # seconds for a client to send its CONNECT
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Connect:
    """One CONNECT the proxy was asked: `target` is 'host:port', `authorization` the
    Proxy-Authorization header (or None), `allowed` whether it was tunnelled."""

    target: str
    authorization: str | None
    allowed: bool


class ConnectProxy:
    """`await start()`, point clients at `url`, read `connects`; `await stop()` ends tunnels."""

    def __init__(self, routes: Mapping[str, int], *, upstream_host: str = "127.0.0.1") -> None:
        self.routes = {host.lower(): port for host, port in routes.items()}
        self.upstream_host = upstream_host
        self.connects: list[Connect] = []
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def hosts(self) -> set[str]:
        """The host names of every CONNECT asked, tunnelled or refused."""
        return {c.target.rsplit(":", 1)[0] for c in self.connects}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ConnectProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(_HEAD_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _HEAD_LIMIT:
            await _answer(writer, "431 Request Header Fields Too Large")
            return
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        target = rest.partition(" ")[0].lower()
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if method != "CONNECT":
            await _answer(writer, "405 Method Not Allowed")
            return
        host, _, port = target.rpartition(":")
        local_port = self.routes.get(host) if port == "443" else None
        self.connects.append(
            Connect(target, headers.get("proxy-authorization"), local_port is not None)
        )
        if local_port is None:
            await _answer(writer, "403 Forbidden")
            return
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, local_port)
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await up_writer.wait_closed()


async def _answer(writer: asyncio.StreamWriter, status: str) -> None:
    writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then half-close so the other side sees it."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()
