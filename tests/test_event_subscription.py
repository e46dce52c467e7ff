"""The gateway's hand-read subscription to the events channel, against the real Redis: every
message in order (bursts, payloads larger than a socket read, those that came before a reader
was named), credentials from the URL, and a dropped connection reported as redis's error."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from sparkgate.gateway.event_subscription import Subscription, subscribe

WAIT_S = 10


@pytest.fixture
def channel() -> str:
    return f"sgtest-subscription-{uuid.uuid4()}"


async def received(got: list[bytes], count: int) -> list[bytes]:
    async with asyncio.timeout(WAIT_S):
        while len(got) < count:
            await asyncio.sleep(0.01)
    return got


async def delivers(url: str, redis: Redis, channel: str) -> None:
    """A subscription through ``url`` gets what is published on ``channel``."""
    subscription = await subscribe(aioredis.Redis.from_url(url), channel)
    try:
        got: list[bytes] = []
        subscription.deliver_to(got.append)
        redis.publish(channel, "hello")
        assert await received(got, 1) == [b"hello"]
    finally:
        subscription.close()


async def test_every_message_arrives_in_order(redis_url: str, redis: Redis, channel: str):
    subscription = await subscribe(aioredis.Redis.from_url(redis_url), channel)
    try:
        # Before a reader is named: held, then handed over first.
        redis.publish(channel, b"early")
        await asyncio.sleep(0.2)
        got: list[bytes] = []
        subscription.deliver_to(got.append)
        big = b"x" * (3 * 1024 * 1024)  # many socket reads
        with redis.pipeline(transaction=False) as burst:
            for n in range(500):
                burst.publish(channel, f"m{n}")
            burst.publish(channel, big)
            burst.publish(channel, "last")
            burst.execute()
        await received(got, 503)
        assert got[0] == b"early"
        assert got[1:501] == [f"m{n}".encode() for n in range(500)]
        assert got[501] == big and got[502] == b"last"
    finally:
        subscription.close()


async def test_a_dropped_connection_is_a_redis_connection_error(redis_url: str, redis: Redis,
                                                                 channel: str):
    subscription = await subscribe(aioredis.Redis.from_url(redis_url), channel)
    try:
        subscription.deliver_to(lambda _: None)
        host, port = subscription._transport.get_extra_info("sockname")[:2]
        assert redis.client_kill(f"{host}:{port}")
        with pytest.raises(RedisConnectionError):
            async with asyncio.timeout(WAIT_S):
                await subscription.lost()
    finally:
        subscription.close()


@pytest.fixture
def redis_user(redis: Redis) -> Iterator[tuple[str, str]]:
    name, password = f"sgtest-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    redis.acl_setuser(name, enabled=True, passwords=[f"+{password}"], commands=["+subscribe"],
                      channels=["*"])
    yield name, password
    redis.acl_deluser(name)


async def test_credentials_in_the_url_are_sent(redis_url: str, redis: Redis, channel: str,
                                               redis_user: tuple[str, str]):
    name, password = redis_user
    host = redis_url.removeprefix("redis://")
    await delivers(f"redis://{name}:{password}@{host}", redis, channel)

    with pytest.raises(ResponseError, match="WRONGPASS"):
        await subscribe(aioredis.Redis.from_url(f"redis://{name}:wrong@{host}"), channel)


def test_the_protocol_answers_replies_in_order_and_splits_messages_off():
    """The parser's side alone: a reply split over reads, messages between replies."""

    async def run() -> None:
        subscription = Subscription()
        sent: list[bytes] = []

        class Transport(asyncio.Transport):
            def write(self, data: bytes) -> None:
                sent.append(data)

            def close(self) -> None:
                pass

        subscription.connection_made(Transport())
        first = asyncio.ensure_future(subscription.command("PING"))
        await asyncio.sleep(0)
        assert sent == [b"*1\r\n$4\r\nPING\r\n"]
        got: list[bytes] = []
        subscription.deliver_to(got.append)
        subscription.data_received(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n+PO")
        assert got == [b"hi"] and not first.done()
        subscription.data_received(b"NG\r\n")
        assert await first == b"PONG"
        subscription.connection_lost(None)
        with pytest.raises(RedisConnectionError):
            await subscription.lost()

    asyncio.run(run())


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


async def test_a_rediss_url_subscribes_over_tls(redis_url: str, redis: Redis, channel: str,
                                                tmp_path: Path):
    """Through a TLS proxy in front of the test Redis (Debian's redis-server has no TLS),
    verifying the server's certificate against the CA the URL names."""
    cert_file, key_file = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_file, key_file)
    plain = Redis.from_url(redis_url).connection_pool.connection_kwargs

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def proxy(client_reader: asyncio.StreamReader,
                    client_writer: asyncio.StreamWriter) -> None:
        reader, writer = await asyncio.open_connection(plain["host"], plain["port"])
        await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer))

    server = await asyncio.start_server(proxy, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert_file}"
    try:
        await delivers(url, redis, channel)
        # A certificate the URL's CA did not sign is refused.
        (tmp_path / "other").mkdir()
        other_ca, _ = self_signed(tmp_path / "other")
        with pytest.raises(ssl.SSLCertVerificationError):
            await subscribe(aioredis.Redis.from_url(
                f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={other_ca}"), channel)
    finally:
        server.close()
