"""The relay's connections to the upstream, against real servers on loopback: kept alive, never a
request sent twice, a closed or half-read connection never reused, TLS verified, the
environment's proxies used as httpx used them."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tether.gateway.upstream import Upstream, UpstreamError

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                   "no_proxy")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[tuple[str, str, int, dict[str, str], bytes]]  # method, target, client port, headers, body
    mode = "ok"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.requests.append(("POST", self.path, self.client_address[1], dict(self.headers), body))
        mode = self.server.mode
        if mode == "silent":
            time.sleep(3)
            return
        if mode in ("stream", "broken"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for index in range(3):
                data = f"data: {index}\n\n".encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                if mode == "broken" and index == 1:
                    self.close_connection = True
                    return  # gone mid-reply: no last chunk
            self.wfile.write(b"0\r\n\r\n")
            return
        reply = b'{"echo": ' + body + b"}"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
        if mode == "drop-idle":  # answered as kept alive, then the connection is closed while idle
            self.wfile.flush()
            self.close_connection = True


@contextlib.contextmanager
def serving(context: ssl.SSLContext | None = None) -> Iterator[tuple[Server, str]]:
    server = Server(("127.0.0.1", 0), Handler)
    server.requests = []
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"{'https' if context else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_connections_are_kept_alive_and_each_request_goes_out_once():
    upstream = Upstream()
    with serving() as (server, url):
        replies = [upstream.post(f"{url}/v1/messages?beta=1", b'{"n": %d}' % n, {"x-api-key": "k"}) for n in range(3)]
        bodies = [reply.read() for reply in replies]
        assert bodies == [b'{"echo": {"n": %d}}' % n for n in range(3)]
        for n in range(3, 6):
            assert upstream.post(f"{url}/v1/messages", b"%d" % n, {}).read() == b'{"echo": %d}' % n
    assert [request[1] for request in server.requests] == ["/v1/messages?beta=1"] * 3 + ["/v1/messages"] * 3
    assert server.requests[0][3]["x-api-key"] == "k"
    # three replies were open at once (three connections); after that, one connection served them all
    assert len({request[2] for request in server.requests[3:]}) == 1


def test_a_connection_the_upstream_closed_while_idle_is_not_used_and_nothing_is_sent_twice():
    upstream = Upstream()
    with serving() as (server, url):
        server.mode = "drop-idle"
        assert upstream.post(url, b"1", {}).read() == b'{"echo": 1}'
        time.sleep(0.2)  # the upstream has closed it by now
        assert upstream.post(url, b"2", {}).read() == b'{"echo": 2}'
    assert [request[4] for request in server.requests] == [b"1", b"2"]
    assert server.requests[0][2] != server.requests[1][2]


def test_a_stream_comes_as_it_is_sent_and_its_connection_is_reused_only_when_read_to_the_end():
    upstream = Upstream()
    with serving() as (server, url):
        server.mode = "stream"
        reply = upstream.post(url, b"{}", {})
        assert reply.status == 200 and reply.headers["content-type"] == "text/event-stream"
        assert b"".join(reply.chunks()) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
        half = upstream.post(url, b"{}", {})  # the same connection, then left half-read
        next(half.chunks())
        half.close()
        half.close()  # twice: still one connection given back, or none
        server.mode = "ok"
        assert upstream.post(url, b"3", {}).read() == b'{"echo": 3}'
    ports = [request[2] for request in server.requests]
    assert ports[0] == ports[1] and ports[2] != ports[1]


def test_a_stream_broken_off_is_an_error_and_its_connection_is_dropped():
    upstream = Upstream()
    with serving() as (server, url):
        server.mode = "broken"
        reply = upstream.post(url, b"{}", {})
        got = []
        with pytest.raises(UpstreamError, match="broke off"):
            for chunk in reply.chunks():
                got.append(chunk)
        assert b"".join(got) == b"data: 0\n\ndata: 1\n\n"
        server.mode = "ok"
        assert upstream.post(url, b"4", {}).read() == b'{"echo": 4}'
    assert server.requests[0][2] != server.requests[1][2]


def test_an_upstream_that_is_not_there_or_silent_is_an_error_that_names_it():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UpstreamError, match=f"cannot connect to http://127.0.0.1:{port}"):
        Upstream().post(f"http://127.0.0.1:{port}/v1/messages", b"{}", {})
    with serving() as (server, url):
        server.mode = "silent"
        started = time.monotonic()
        with pytest.raises(UpstreamError, match=r"no reply from .*timed out"):
            Upstream(read_timeout_s=0.5).post(url, b"{}", {})
        assert time.monotonic() - started < 2.5
    for bad in ("ftp://example.com/x", "http:///nohost", "file:///etc/passwd"):
        with pytest.raises(UpstreamError, match="not an http"):
            Upstream().post(bad, b"", {})


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def test_tls_is_verified_against_the_trusted_authorities(certificate: tuple[Path, Path]):
    with serving(server_context(certificate)) as (server, url):
        with pytest.raises(UpstreamError, match="CERTIFICATE_VERIFY_FAILED"):
            Upstream().post(url, b"1", {})
        trusting = ssl.create_default_context(cafile=str(certificate[0]))
        assert Upstream(context=trusting).post(url, b"2", {}).read() == b'{"echo": 2}'
        wrong_name = url.replace("127.0.0.1", "localhost")  # the certificate names 127.0.0.1 only
        with pytest.raises(UpstreamError, match=r"CERTIFICATE_VERIFY_FAILED|match"):
            Upstream(context=trusting).post(wrong_name, b"3", {})
    assert [request[4] for request in server.requests] == [b"2"]


class Proxy:
    """A forward proxy on loopback: CONNECT tunnels, and plain HTTP requests in absolute form."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://user:p%40ss@127.0.0.1:{self.listener.getsockname()[1]}"
        self.seen: list[bytes] = []  # each request's head, as the proxy received it
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(1)
        self.seen.append(head)
        method, target, _ = head.split(b"\r\n")[0].split(b" ")
        if method == b"CONNECT":
            host, port = target.decode().rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            origin = target.split(b"/")[2].decode()
            host, port = origin.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            upstream.sendall(head)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_the_environments_proxies_are_used_with_their_credentials_and_no_proxy_is_honoured(
        certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch):
    proxy = Proxy()
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    with serving(server_context(certificate)) as (tls_server, tls_url), serving() as (server, url):
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        assert Upstream(context=trusting).post(f"{tls_url}/v1/messages", b"1", {}).read() == b'{"echo": 1}'
        assert Upstream().post(f"{url}/v1/messages", b"2", {}).read() == b'{"echo": 2}'
        tunnel, plain = proxy.seen
        port = tls_url.rsplit(":", 1)[1]
        assert tunnel.startswith(f"CONNECT 127.0.0.1:{port} HTTP/1.".encode())
        assert plain.startswith(f"POST {url}/v1/messages HTTP/1.1".encode())
        for head in (tunnel, plain):
            assert b"proxy-authorization: basic dxnlcjpwqhnz" in head.lower() and b"dXNlcjpwQHNz" in head
        assert tls_server.requests[0][1] == "/v1/messages" and server.requests[0][1] == url + "/v1/messages"
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert Upstream().post(url, b"3", {}).read() == b'{"echo": 3}'
        assert len(proxy.seen) == 2
        monkeypatch.delenv("NO_PROXY")
        monkeypatch.setenv("HTTP_PROXY", "socks5://127.0.0.1:1080")
        with pytest.raises(UpstreamError, match="not an http:// proxy"):
            Upstream().post(url, b"4", {})
    proxy.listener.close()
