"""The streaming HTTP layer (tui/load/transport.py): every connection of a pool reads into one shared buffer, so
answers read in turns must each arrive whole and in order, over plain TCP and over TLS."""

from __future__ import annotations

import asyncio
import ssl
import subprocess

import pytest

from tui.load.transport import ConnectionPool


def chunked(pieces: list[bytes]) -> list[bytes]:
    """An HTTP/1.1 answer's head and each piece as a chunk of its own, then the last chunk."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    return [head, *(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces), b"0\r\n\r\n"]


async def serve(pieces_of, ssl_context: ssl.SSLContext | None = None) -> tuple[asyncio.Server, int]:
    """A server that answers each request with the pieces `pieces_of(n)` (n: the request's number), one write
    each, a little apart, so the answers on several connections interleave."""
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):  # the client closed its kept-alive connection
                writer.close()
                return
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            count += 1
            for part in chunked(pieces_of(count)):
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.002)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl_context)
    return server, server.sockets[0].getsockname()[1]


async def fetch(pool: ConnectionPool, url: str) -> bytes:
    got: list[bytes] = []
    response = await pool.post(url, b"{}", {}, lambda _: lambda piece, _t: got.append(piece), read_timeout=10)
    assert response.status == 200
    return b"".join(got)


def pieces(n: int) -> list[bytes]:
    return [f"data: answer {n} piece {i} {'x' * (n * 7 % 50)}\n\n".encode() for i in range(30)]


async def test_answers_read_in_turns_into_one_buffer_each_arrive_whole():
    server, port = await serve(pieces)
    pool = ConnectionPool()
    try:
        bodies = await asyncio.gather(*(fetch(pool, f"http://127.0.0.1:{port}/v1/chat/completions")
                                        for _ in range(20)))
        again = await fetch(pool, f"http://127.0.0.1:{port}/v1/chat/completions")  # a kept-alive connection
    finally:
        await pool.close()
        server.close()
    expected = {b"".join(pieces(n)) for n in range(1, 22)}
    assert len(set(bodies)) == 20 and set(bodies) | {again} == expected


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return str(cert), str(key)


@pytest.mark.slow  # openssl makes the certificate
async def test_answers_over_tls_arrive_whole(certificate):
    cert, key = certificate
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    server, port = await serve(pieces, server_side)
    pool = ConnectionPool()
    pool._ssl = ssl.create_default_context(cafile=cert)  # the pool's own context, trusting this certificate
    try:
        bodies = await asyncio.gather(*(fetch(pool, f"https://127.0.0.1:{port}/v1/chat/completions")
                                        for _ in range(8)))
    finally:
        await pool.close()
        server.close()
    assert set(bodies) == {b"".join(pieces(n)) for n in range(1, 9)}
