"""The web layer of ``ensemble-cnn serve``: the real server on an ephemeral port, a stand-in predictor.

The stand-in decodes the image with Pillow and derives its answer from the mean darkness, so
every answer is checkable; it also asserts that no two threads are ever inside it at once.
"""
from __future__ import annotations

import http.client
import io
import json
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

from ensemble_cnn.inference.serve import (
    MAX_BODY_BYTES,
    is_loopback,
    make_server,
    one_line,
    serve,
    server_url,
)

MEMBERS = ("alpha", "beta", "gamma")


def stand_in_answer(data: bytes) -> dict:
    """What :class:`StandInPredictor` answers for ``data``; raises ValueError if not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            gray = np.asarray(image.convert("L").resize((28, 28)), dtype=np.float64)
    except Exception:  # noqa: BLE001 - Pillow raises many types for bytes that are not an image
        raise ValueError("not an image\n(a second line the server must drop)") from None
    ink = 255.0 - gray  # light ink on black, as MNIST
    label = round(float(ink.mean())) % 10
    labels = [label, label, (label + 1) % 10]  # the third member always disagrees

    def probabilities(top: int) -> list[float]:
        return [0.91 if digit == top else 0.01 for digit in range(10)]

    members = [{"name": name, "label": lab, "probabilities": probabilities(lab)} for name, lab in zip(MEMBERS, labels)]
    mean = [sum(m["probabilities"][d] for m in members) / len(members) for d in range(10)]
    return {
        "label": label,
        "confidence": mean[label],
        "vote": "majority",
        "members": members,
        "probabilities": mean,
        "input": np.round(ink).astype(int).tolist(),
    }


class StandInPredictor:
    """Predictor for the tests: deterministic answers, records them, refuses concurrent entry."""

    def __init__(self, *, delay: float = 0.0):
        self.delay = delay
        self.fail_with: BaseException | None = None
        self.verdict: dict = {}  # set, unsure, not_a_digit, verdict: what a run with calibration digits adds
        self.answers: list[dict] = []
        self.images: list[bytes] = []
        self.calls = 0
        self.overlaps = 0
        self._inside = threading.Lock()

    def _enter(self) -> None:
        if not self._inside.acquire(blocking=False):
            self.overlaps += 1
            raise AssertionError("predictor entered by two threads at once")

    def predict_image(self, data: bytes) -> dict:
        self._enter()
        try:
            self.calls += 1
            if self.delay:
                time.sleep(self.delay)
            if self.fail_with is not None:
                raise self.fail_with
            answer = {**stand_in_answer(data), **self.verdict}
            self.images.append(data)
            self.answers.append(answer)
            return answer
        finally:
            self._inside.release()

    def info(self) -> dict:
        self._enter()
        try:
            return {"run": "runs/stand-in", "members": list(MEMBERS), "architecture": "nielsen",
                    "vote": "majority", "test_accuracy": 0.9962}
        finally:
            self._inside.release()


def image_bytes(gray: int = 200, *, fmt: str = "PNG", size: int = 56) -> bytes:
    """A ``size`` x ``size`` image: background ``gray`` with a black bar (some ink)."""
    image = Image.new("L", (size, size), gray)
    image.paste(0, (size // 4, size // 4, size // 2, 3 * size // 4))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture()
def predictor() -> StandInPredictor:
    return StandInPredictor()


@contextmanager
def serving(predictor: StandInPredictor, host: str = "127.0.0.1", log=None, **options) -> Iterator:
    """A server for ``predictor`` on an ephemeral port of ``host``, serving in a thread (``options``: more
    keywords of ``make_server``, e.g. a short ``header_deadline_s``)."""
    server = make_server(predictor, host=host, port=0, log=log, **options)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def server(predictor):
    with serving(predictor) as server:
        yield server
    assert predictor.overlaps == 0


@pytest.fixture()
def port(server) -> int:
    return server.server_address[1]


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            host: str = "127.0.0.1"):
    """(status, headers, body bytes) of one request on a fresh connection."""
    connection = http.client.HTTPConnection(host, port, timeout=20)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def predict(port: int, body: bytes, content_type: str = "image/png", host: str = "127.0.0.1"):
    return request(port, "POST", "/api/predict", body, {"Content-Type": content_type}, host)


def raw_response(port: int, raw: bytes, host: str = "127.0.0.1") -> tuple[str, dict, bytes]:
    """Send ``raw`` bytes as the request; (status line, headers with lower-case names, the rest)
    once the server closes. Bounded: 20 s and 16 MB in all (what came by then, if it keeps the
    connection open)."""
    deadline, data = time.monotonic() + 20, b""
    with socket.create_connection((host, port), timeout=20) as sock:
        sock.sendall(raw)
        while len(data) < 16 * 1024 * 1024 and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
    return lines[0], headers, body


def raw_exchange(port: int, raw: bytes) -> tuple[int, dict, bytes]:
    """Send ``raw`` bytes as the request, read the response until the server closes."""
    status_line, headers, body = raw_response(port, raw)
    return int(status_line.split()[1]), headers, body


def assert_json_error(status: int, headers, body: bytes, expected_status: int) -> str:
    assert status == expected_status, body
    content_type = headers["content-type"] if isinstance(headers, dict) else headers["Content-Type"]
    assert content_type == "application/json"
    payload = json.loads(body)
    assert set(payload) == {"error"}
    message = payload["error"]
    assert isinstance(message, str) and message and "\n" not in message
    return message


def assert_still_serves(port: int, host: str = "127.0.0.1") -> None:
    status, _, body = predict(port, image_bytes(180), host=host)
    assert status == 200
    assert json.loads(body)["label"] == stand_in_answer(image_bytes(180))["label"]


def assert_refused_400(port: int, raw: bytes, host: str = "127.0.0.1") -> str:
    """``raw`` gets one full HTTP/1.x 400 response (status line, JSON error, the connection
    closed, nothing after it), and the server still serves; the error message is returned."""
    status_line, headers, body = raw_response(port, raw, host)
    assert re.fullmatch(r"HTTP/1\.[01] 400 \S.*", status_line), (status_line, body)
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)  # one response, nothing smuggled after it
    message = assert_json_error(400, headers, body, 400)
    assert_still_serves(port, host)
    return message


# ---- static files --------------------------------------------------------------------------
def test_index_page_with_security_headers(port):
    status, headers, body = request(port, "GET", "/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert int(headers["Content-Length"]) == len(body)
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    html = body.decode("utf-8")
    for element_id in ("pad", "clear", "upload", "input28", "label", "confidence", "agreement",
                       "members", "status", "info"):
        assert f'id="{element_id}"' in html
    assert 'name="viewport"' in html and 'aria-live="polite"' in html
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere: works offline


@pytest.mark.parametrize(("path", "content_type", "marker"), [
    ("/index.html", "text/html; charset=utf-8", b"<!doctype html>"),
    ("/app.js", "text/javascript; charset=utf-8", b"/api/predict"),
    ("/style.css", "text/css; charset=utf-8", b"touch-action: none"),
])
def test_static_files(port, path, content_type, marker):
    status, headers, body = request(port, "GET", path)
    assert status == 200
    assert headers["Content-Type"] == content_type
    assert int(headers["Content-Length"]) == len(body)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert marker in body


def test_head_sends_headers_only(port):
    status, headers, body = request(port, "HEAD", "/app.js")
    assert status == 200 and body == b""
    assert int(headers["Content-Length"]) == len(request(port, "GET", "/app.js")[2])


def test_query_string_is_ignored(port):
    assert request(port, "GET", "/style.css?v=2")[0] == 200


@pytest.mark.parametrize("path", [
    "/../pyproject.toml",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/..%2fpyproject.toml",
    "//etc/passwd",
    "/static/../serve.py",
    "/static/app.js",
    "/serve.py",
    "/ensemble_cnn/inference/serve.py",
    "/app.js/",
    "/APP.JS",
    "/etc/passwd",
    "/favicon.ico",
])
def test_only_the_allowlist_is_served(port, path):
    message = assert_json_error(*raw_exchange(port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()), 404)
    assert message.startswith("not found")
    assert_still_serves(port)


def test_absolute_path_in_request_line_is_refused(port):
    raw = b"GET /etc/passwd HTTP/1.0\r\n\r\n"
    assert_json_error(*raw_exchange(port, raw), 404)
    raw = b"GET http://127.0.0.1/../../etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    assert_json_error(*raw_exchange(port, raw), 404)


# ---- /api/info, /api/predict ----------------------------------------------------------------
def test_info(port):
    status, headers, body = request(port, "GET", "/api/info")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    info = json.loads(body)
    assert info["members"] == list(MEMBERS) and info["test_accuracy"] == 0.9962


def assert_well_formed(answer: dict) -> None:
    assert set(answer) == {"label", "confidence", "vote", "members", "probabilities", "input"}
    assert answer["label"] in range(10) and 0.0 <= answer["confidence"] <= 1.0
    assert len(answer["probabilities"]) == 10
    assert len(answer["input"]) == 28 and all(len(row) == 28 for row in answer["input"])
    assert all(0 <= v <= 255 and isinstance(v, int) for row in answer["input"] for v in row)
    assert len(answer["members"]) == 3
    for member in answer["members"]:
        assert set(member) == {"name", "label", "probabilities"}
        assert member["label"] in range(10) and len(member["probabilities"]) == 10


@pytest.mark.parametrize(("fmt", "content_type"), [
    ("PNG", "image/png"),
    ("JPEG", "image/jpeg"),
    ("PNG", "image/png; charset=binary"),
    ("JPEG", "IMAGE/JPEG"),
])
def test_predict_good_image(port, predictor, fmt, content_type):
    data = image_bytes(150, fmt=fmt)
    status, headers, body = predict(port, data, content_type)
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert_well_formed(answer)
    assert answer == stand_in_answer(data) == predictor.answers[-1]
    assert predictor.images[-1] == data  # the server passes the body through untouched


def test_predict_keeps_the_connection_alive(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        for gray in (100, 200):
            connection.request("POST", "/api/predict", body=image_bytes(gray), headers={"Content-Type": "image/png"})
            response = connection.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["label"] == stand_in_answer(image_bytes(gray))["label"]
    finally:
        connection.close()


def test_numpy_values_in_the_answer_are_serialised(server, port, predictor):
    class NumpyPredictor(StandInPredictor):
        def predict_image(self, data):
            answer = super().predict_image(data)
            return {**answer, "confidence": np.float32(answer["confidence"]),
                    "input": np.asarray(answer["input"], dtype=np.uint8)}

    server.predictor = NumpyPredictor()
    status, _, body = predict(port, image_bytes(90))
    assert status == 200
    assert_well_formed(json.loads(body))


# ---- bad requests ----------------------------------------------------------------------------
def test_not_an_image(port):
    message = assert_json_error(*predict(port, b"\x89PNG\r\n\x1a\n but not really"), 400)
    assert message == "not an image"  # the first line only
    assert_still_serves(port)


def test_empty_body(port, predictor):
    message = assert_json_error(*predict(port, b""), 400)
    assert "empty" in message
    assert predictor.calls == 0
    assert_still_serves(port)


def test_wrong_content_type(port, predictor):
    for content_type in ("text/plain", "application/octet-stream", "image/gif", "multipart/form-data; boundary=x"):
        message = assert_json_error(*predict(port, image_bytes(), content_type), 415)
        assert "image/png" in message
    raw = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n"
           b"Connection: close\r\n\r\nabcd")
    assert_json_error(*raw_exchange(port, raw), 415)  # no Content-Type at all
    assert predictor.calls == 0
    assert_still_serves(port)


def test_body_over_the_limit_is_refused_unread(port, predictor):
    # Announce 100 MB, send only the headers: the answer must come without the body.
    raw = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
           b"Content-Length: 104857600\r\n\r\n")
    started = time.monotonic()
    status, headers, body = raw_exchange(port, raw)
    message = assert_json_error(status, headers, body, 413)
    assert "too large" in message
    assert headers["connection"] == "close"
    assert time.monotonic() - started < 10
    # Just over the limit, really sent (the client gets the answer, not a reset).
    message = assert_json_error(*predict(port, b"\0" * (MAX_BODY_BYTES + 1)), 413)
    # A number too long to be a size at all.
    raw = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
           b"Content-Length: " + b"9" * 60 + b"\r\n\r\n")
    assert_json_error(*raw_exchange(port, raw), 413)
    assert predictor.calls == 0
    assert_still_serves(port)


def test_body_at_the_limit_reaches_the_predictor(port, predictor):
    data = image_bytes()
    data += b"\0" * (MAX_BODY_BYTES - len(data))  # PNG decoders ignore trailing bytes
    status, _, body = predict(port, data)
    assert status == 200, body
    assert predictor.images[-1] == data


def test_expect_100_continue_is_refused_before_the_body(port):
    raw = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
           b"Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n")
    assert_json_error(*raw_exchange(port, raw), 413)
    data = image_bytes(120)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                     b"Content-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n" % len(data))
        assert sock.recv(100).startswith(b"HTTP/1.1 100")
        sock.sendall(data)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert b" 200 " in response.split(b"\r\n", 1)[0]


def test_missing_content_length(port, predictor):
    raw = b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n\r\n"
    message = assert_json_error(*raw_exchange(port, raw), 411)
    assert "Content-Length" in message
    assert predictor.calls == 0
    assert_still_serves(port)


def test_chunked_upload_is_refused(port, predictor):
    raw = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n")
    assert_json_error(*raw_exchange(port, raw), 411)
    assert predictor.calls == 0
    assert_still_serves(port)


@pytest.mark.parametrize("length", [b"abc", b"-5", b"12abc", b"1.5", b"0x10", b"", b"\xc2\xb2"])
def test_malformed_content_length(port, predictor, length):
    raw = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
           b"Content-Length: " + length + b"\r\n\r\n")
    status, headers, body = raw_exchange(port, raw)
    if length == b"":
        assert status in (400, 411)
        assert_json_error(status, headers, body, status)
    else:
        assert_json_error(status, headers, body, 400)
    assert predictor.calls == 0
    assert_still_serves(port)


def test_conflicting_content_lengths(port):
    raw = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
           b"Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde")
    assert_json_error(*raw_exchange(port, raw), 400)


def test_body_shorter_than_announced(port, predictor):
    raw = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
           b"Content-Length: 1000\r\n\r\nonly this")
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)  # the client gives up sending
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.split()[1] == b"400"
    assert "shorter" in json.loads(body)["error"]
    assert predictor.calls == 0
    assert_still_serves(port)


def test_slow_client_times_out(port, monkeypatch):
    import ensemble_cnn.inference.serve as serve_module

    monkeypatch.setattr(serve_module, "READ_TIMEOUT_S", 0.5)
    raw = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
           b"Content-Length: 1000\r\n\r\nonly this")
    started = time.monotonic()
    status, headers, body = raw_exchange(port, raw)  # sends less and waits: the server must give up
    assert_json_error(status, headers, body, 408)
    assert time.monotonic() - started < 10
    assert_still_serves(port)


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/api/predict", "POST"),
    ("PUT", "/api/predict", "POST"),
    ("POST", "/", "GET, HEAD"),
    ("DELETE", "/app.js", "GET, HEAD"),
    ("POST", "/api/info", "GET, HEAD"),
    ("OPTIONS", "/api/predict", "POST"),
    ("BREW", "/index.html", "GET, HEAD"),
])
def test_wrong_method(port, predictor, method, path, allow):
    body = image_bytes() if method in ("POST", "PUT") else None
    status, headers, response = request(port, method, path, body, {"Content-Type": "image/png"})
    message = assert_json_error(status, headers, response, 405)
    assert headers["Allow"] == allow
    assert method in message
    assert predictor.calls == 0
    assert_still_serves(port)


def test_unknown_path(port):
    for method in ("GET", "POST", "PATCH"):
        assert_json_error(*request(port, method, "/api/nothing", b"x" if method != "GET" else None), 404)
    assert_still_serves(port)


def test_malformed_request_line_is_json_too(port):
    status, headers, body = raw_exchange(port, b"GET / too many words HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert_json_error(status, headers, body, 400)
    status, headers, body = raw_exchange(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"y" * 70000 + b"\r\n\r\n")
    assert_json_error(status, headers, body, 431)
    assert_still_serves(port)


def test_foreign_host_header_is_refused(port):
    raw = b"GET /api/info HTTP/1.1\r\nHost: attacker.example:8000\r\n\r\n"
    assert_json_error(*raw_exchange(port, raw), 403)
    for host in (b"localhost:1234", b"127.0.0.1", b"[::1]:80", b"LOCALHOST"):
        raw = b"GET /api/info HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
        assert raw_exchange(port, raw)[0] == 200, host


@pytest.mark.parametrize("raw", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # bytes, not HTTP (a TLS hello, cut)
    b"hello\r\n\r\n",
    b"GET /\r\n\r\n",  # HTTP/0.9: its answer would have no status line and no headers
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # the HTTP/2 connection preface
    b"GET / HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET / HTTP/1.x\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET / http/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /a\x00b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"G(T / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
])
def test_bad_request_line_gets_a_full_400(port, predictor, raw):
    message = assert_refused_400(port, raw)
    assert "request line" in message or "HTTP version" in message
    assert predictor.calls == 1  # assert_still_serves's request only


def test_bad_request_line_after_a_good_request_on_one_connection(port):
    # The second request line is garbage: its answer must have a status line, and the stale
    # HEAD of the first request must not drop the error body.
    raw = (b"HEAD /app.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
           b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    status_line, headers, rest = raw_response(port, raw)  # HEAD: no body, the rest is the 2nd response
    assert status_line == "HTTP/1.1 200 OK" and int(headers["content-length"]) > 0
    second_head, _, body = rest.partition(b"\r\n\r\n")
    assert re.fullmatch(rb"HTTP/1\.1 400 \S[^\r]*", second_head.split(b"\r\n", 1)[0]), rest
    assert "HTTP version" in json.loads(body)["error"]
    assert_still_serves(port)


@pytest.mark.parametrize("bind", ["127.0.0.1", "::1"])
def test_duplicate_host_headers_are_refused(predictor, bind):
    if bind == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    with serving(predictor, bind) as server:
        port = server.server_address[1]
        for first, second in ((b"127.0.0.1", b"evil.com"), (b"evil.com", b"127.0.0.1"), (b"localhost", b"localhost")):
            raw = b"GET /api/info HTTP/1.1\r\nHost: " + first + b"\r\nHost: " + second + b"\r\n\r\n"
            assert assert_refused_400(port, raw, bind) == "more than one Host header"
        # One Host, with a port or as an IPv6 literal, still works on this bind.
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "127.0.0.1", f"[::1]:{port}", "[::1]", "LOCALHOST"):
            raw = f"GET /api/info HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            status_line, _, body = raw_response(port, raw, bind)
            assert status_line == "HTTP/1.1 200 OK", (host, body)
            assert json.loads(body)["members"] == list(MEMBERS)
        raw = f"GET /api/info HTTP/1.1\r\nHost: evil.com:{port}\r\n\r\n".encode()
        status_line, headers, body = raw_response(port, raw, bind)
        assert status_line.startswith("HTTP/1.1 403 ")
        assert "evil.com" in assert_json_error(403, headers, body, 403)
    assert predictor.overlaps == 0


def test_empty_or_missing_host_header_is_a_400(port):
    for raw in (b"GET /api/info HTTP/1.1\r\nHost:\r\n\r\n", b"GET /api/info HTTP/1.1\r\nHost:   \r\n\r\n"):
        message = assert_refused_400(port, raw)
        assert message.startswith("empty Host header") and "'error'" not in message
    message = assert_refused_400(port, b"GET /api/info HTTP/1.1\r\nAccept: */*\r\n\r\n")
    assert message.startswith("missing Host header")
    # HTTP/1.0 may leave Host out.
    status_line, _, body = raw_response(port, b"GET /api/info HTTP/1.0\r\n\r\n")
    assert status_line == "HTTP/1.1 200 OK" and json.loads(body)["members"] == list(MEMBERS)


def test_duplicate_content_length_is_refused_even_when_equal(port, predictor):
    data = image_bytes(150)
    head = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(data), len(data)))
    assert assert_refused_400(port, head + data) == "more than one Content-Length header"
    assert predictor.calls == 1  # assert_still_serves's request only


def test_request_smuggled_behind_two_content_lengths_is_not_served(port):
    # A front end honouring the second Content-Length would see one request; a server honouring
    # the first would answer a second, smuggled one. Either reading is refused: one 400, closed.
    smuggled = b"GET /app.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    raw = (b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
           b"Content-Length: %d\r\n\r\n" % len(smuggled)) + smuggled
    assert assert_refused_400(port, raw) == "more than one Content-Length header"


def test_duplicate_content_type_is_refused(port, predictor):
    data = image_bytes(150)
    raw = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
           b"Content-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(data)) + data
    assert assert_refused_400(port, raw) == "more than one Content-Type header"
    assert predictor.calls == 1  # assert_still_serves's request only


@pytest.mark.parametrize("header_lines", [
    b"X : y\r\nHost: evil.com\r\n",  # space before the colon: http.server dropped every header after it
    b"NoColonHere\r\nHost: evil.com\r\n",
    b" X: y\r\nHost: 127.0.0.1\r\n",  # the first header line is a continuation
    b"Host: 127.0.0.1\r\n evil.com\r\n",  # obs-fold: a folded Host
    b"Host: 127.0.0.1\r\nX-Note: a\x00b\r\n",
    b"Host: 127.0.0.1\r\nX(y): z\r\n",
])
def test_malformed_header_lines_are_refused(port, header_lines):
    message = assert_refused_400(port, b"GET /api/info HTTP/1.1\r\n" + header_lines + b"\r\n")
    assert "header" in message


# ---- predictor failures ----------------------------------------------------------------------
def test_predictor_crash_is_a_500_and_the_server_keeps_serving(port, predictor):
    predictor.fail_with = RuntimeError("CUDA fell over\nTraceback (most recent call last): ...")
    message = assert_json_error(*predict(port, image_bytes()), 500)
    assert message == "prediction failed: RuntimeError: CUDA fell over"
    predictor.fail_with = None
    assert_still_serves(port)
    assert request(port, "GET", "/")[0] == 200


def test_info_failure_is_a_500(server, port):
    class BrokenInfo(StandInPredictor):
        def info(self):
            raise OSError("run folder vanished")

    server.predictor = BrokenInfo()
    assert assert_json_error(*request(port, "GET", "/api/info"), 500) == "run info failed: OSError: run folder vanished"
    assert_still_serves(port)


def test_predictor_value_error_is_a_400(port, predictor):
    predictor.fail_with = ValueError("image is 3x3: too small\nmore detail")
    assert assert_json_error(*predict(port, image_bytes()), 400) == "image is 3x3: too small"
    predictor.fail_with = None
    assert_still_serves(port)


def test_answer_that_is_not_json_is_a_500(server, port):
    class NanPredictor(StandInPredictor):
        def predict_image(self, data):
            return {**super().predict_image(data), "confidence": float("nan")}

    server.predictor = NanPredictor()
    assert "JSON" in assert_json_error(*predict(port, image_bytes()), 500)
    server.predictor = StandInPredictor()
    assert_still_serves(port)


def test_concurrent_requests_are_serialised(server, port):
    predictor = StandInPredictor(delay=0.01)
    server.predictor = predictor
    grays = [int(g) for g in np.linspace(0, 255, 20)]
    images = [image_bytes(g) for g in grays]

    def one(data: bytes):
        status, _, body = predict(port, data)
        return status, json.loads(body), data

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, images))
    assert [status for status, _, _ in results] == [200] * 20
    for _, answer, data in results:
        assert answer == stand_in_answer(data)
    assert len({answer["label"] for _, answer, _ in results}) > 3  # different images, different answers
    assert predictor.calls == 20 and predictor.overlaps == 0


def test_info_and_predict_share_the_lock(server, port):
    predictor = StandInPredictor(delay=0.01)
    server.predictor = predictor

    def one(i: int) -> int:
        if i % 2:
            return request(port, "GET", "/api/info")[0]
        return predict(port, image_bytes(i * 10))[0]

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert list(pool.map(one, range(20))) == [200] * 20
    assert predictor.overlaps == 0


# ---- serve() and helpers -----------------------------------------------------------------------
def test_serve_prints_the_address_and_stops_cleanly_on_ctrl_c(monkeypatch, predictor):
    from ensemble_cnn.inference import serve as serve_module
    lines: list[str] = []
    closed: list[bool] = []
    real_make_server = serve_module.make_server

    def make_server_spy(*args, **kwargs):
        server = real_make_server(*args, **kwargs)

        def interrupted(*_args, **_kwargs):
            raise KeyboardInterrupt

        server.serve_forever = interrupted
        real_close = server.server_close
        server.server_close = lambda: (closed.append(True), real_close())
        return server

    monkeypatch.setattr(serve_module, "make_server", make_server_spy)
    serve(predictor, host="127.0.0.1", port=0, log=lines.append)  # returns: no traceback
    assert closed == [True]
    assert any(line.startswith("serving on http://127.0.0.1:") and line.split()[2].endswith("/") for line in lines)
    assert not any("reachable from other machines" in line for line in lines)

    lines.clear()
    serve(predictor, host="0.0.0.0", port=0, log=lines.append)
    warnings = [line for line in lines if "reachable from other machines" in line]
    assert len(warnings) == 1 and "\n" not in warnings[0]


def test_request_log_is_one_line_per_request(predictor):
    lines: list[str] = []
    with serving(predictor, log=lines.append) as server:
        port = server.server_address[1]
        request(port, "GET", "/")
        predict(port, b"nope")
    assert len(lines) == 2
    assert lines[0].startswith('127.0.0.1 "GET /" 200 ')
    assert lines[1].startswith('127.0.0.1 "POST /api/predict" 400 ')


def test_helpers():
    assert one_line("a\nb") == "a" and one_line("\n  x  \n") == "x" and one_line("") == "error"
    assert len(one_line("y" * 1000)) <= 300
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("192.168.1.5")
    assert not is_loopback("example.com")


def test_server_url(predictor):
    server = make_server(predictor, host="0.0.0.0", port=0)
    try:
        assert server_url(server) == f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.server_close()


class UniformEnsemble:
    """Stands in for an Ensemble behind the real ImagePredictor: two members, uniform probabilities."""

    names_ = ["m0", "m1"]
    tta = "none"

    def member_probabilities(self, digits):
        return np.full((2, len(digits), 10), 0.1, dtype=np.float32)

    def thresholds(self, **_):
        from ensemble_cnn.errors import RunFolderError

        raise RunFolderError("no calibration digits (a stand-in)")


def png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("size, mode, colour", [
    ((50, 50), "L", 255), ((50, 50), "L", 0), ((1, 1), "L", 90), ((10000, 1), "L", 255),
    ((40, 40), "RGBA", (0, 0, 0, 0)), ((8000, 5000), "RGB", (255, 255, 255)),  # the last: a 40 MP white upload
], ids=["white", "black", "1x1", "10000x1", "transparent", "40MP white"])
def test_an_upload_with_no_ink_is_a_422(server, port, size, mode, colour):
    from ensemble_cnn.inference.predict import ImagePredictor

    server.predictor = ImagePredictor(UniformEnsemble())
    body = png_of(Image.new(mode, size, colour))
    assert len(body) <= MAX_BODY_BYTES
    message = assert_json_error(*predict(port, body), 422)
    assert message.startswith("upload: no ink found")
    status, _, answer = predict(port, image_bytes(230))  # a drawn bar: predicted
    assert status == 200 and json.loads(answer)["agreement"] == {"count": 2, "of": 2}


# ---- bounded threads: a whole-header deadline and a cap on connections ---------------------
def handler_threads() -> int:
    """Threads serving a connection now (socketserver names each after ``process_request_thread``)."""
    return sum("process_request_thread" in thread.name for thread in threading.enumerate())


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_headers_trickled_a_byte_at_a_time_are_cut_off_at_the_deadline(predictor):
    # Slowloris: one header byte every 0.2 s. Each read's 30 s timeout alone never fires (every byte
    # resets it); the whole-header deadline (1 s here, 10 s by default) must close the connection.
    raw = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40
    with serving(predictor, header_deadline_s=1.0) as server:
        port = server.server_address[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            started, closed_after = time.monotonic(), None
            for byte in raw:  # 8 s of trickling in all
                try:
                    sock.sendall(bytes([byte]))
                except OSError:  # reset by the server: closed
                    closed_after = time.monotonic() - started
                    break
                readable, _, _ = select.select([sock], [], [], 0.2)
                if readable:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    assert data == b"", data  # closed, no response to a request never finished
                    closed_after = time.monotonic() - started
                    break
        assert closed_after is not None, "a trickling client held its connection for 8 s"
        assert 0.9 < closed_after < 4, closed_after
        assert wait_for(lambda: handler_threads() == 0)
        assert_still_serves(port)


def test_connections_beyond_the_cap_get_a_503_and_no_thread(predictor):
    with serving(predictor, max_connections=4) as server:
        port = server.server_address[1]
        hogs = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
        try:
            for hog in hogs:
                hog.sendall(b"GET / HTTP/1.1\r\n")  # a request begun, never finished: each holds a thread
            assert wait_for(lambda: handler_threads() == 4)
            for _ in range(20):  # the answer comes before the client sends anything: no thread waits for it
                status_line, headers, body = raw_response(port, b"")
                assert status_line == "HTTP/1.1 503 Service Unavailable", (status_line, body)
                assert headers["connection"] == "close" and headers["retry-after"] == "1"
                assert "too many connections (at most 4 at once)" in assert_json_error(503, headers, body, 503)
                assert handler_threads() <= 4
            for _ in range(20):  # a whole request sent at once: refused too (503, or reset if it came too late)
                try:
                    status_line = raw_response(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0]
                except ConnectionResetError:
                    status_line = "reset"
                assert status_line in ("HTTP/1.1 503 Service Unavailable", "reset")
                assert handler_threads() <= 4
        finally:
            for hog in hogs:
                hog.close()
        assert wait_for(lambda: handler_threads() == 0)
        assert_still_serves(port)


@pytest.mark.parametrize("options", [{"header_deadline_s": 0}, {"header_deadline_s": float("nan")},
                                     {"max_connections": 0}, {"max_connections": 2.5}])
def test_deadline_and_cap_must_be_positive(predictor, options):
    with pytest.raises(ValueError, match=next(iter(options))):
        make_server(predictor, port=0, **options)


def test_a_too_large_body_is_reported_with_its_declared_length(port, predictor):
    def declared(length: bytes) -> str:
        raw = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
               b"Content-Length: " + length + b"\r\n\r\n")
        return assert_json_error(*raw_exchange(port, raw), 413)

    limit = f"over the limit of {MAX_BODY_BYTES} bytes"
    assert declared(b"1" + b"0" * 30) == f"image too large: Content-Length declares 1{'0' * 30} bytes, {limit} (2 MB)"
    assert declared(b"5000000") == f"image too large: Content-Length declares 5000000 bytes, {limit} (2 MB)"
    assert declared(b"9" * 60) == f"image too large: Content-Length declares a 60-digit number of bytes, {limit} (2 MB)"
    assert str(MAX_BODY_BYTES + 1) not in declared(b"9" * 60)
    # Leading zeros do not make a length large: 5 bytes, read and handed over.
    raw = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
           b"Content-Length: " + b"0" * 30 + b"5\r\n\r\nabcde")
    assert assert_json_error(*raw_exchange(port, raw), 400) == "not an image"
    assert predictor.calls == 1
