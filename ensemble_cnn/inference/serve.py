"""Local web page to draw a digit and watch an ensemble's members vote (``ensemble-cnn serve``).

Standard library only. :func:`make_server` builds a :class:`http.server.ThreadingHTTPServer`
around a *predictor* (any object with the two methods below); :func:`serve` runs it until Ctrl-C.

Predictor interface (the model side; it may be slow and is assumed NOT thread-safe, so every
call to it is serialised by one lock)::

    predict_image(data: bytes) -> dict   # JSON-ready; raises ValueError(one line) for a bad image,
                                         # NoInkError (a ValueError) for a blank one (answered 422)
    info() -> dict                       # JSON-ready description of the run

Routes
------
``GET /``, ``/index.html``, ``/app.js``, ``/style.css``
    The page, from the package folder ``ensemble_cnn/inference/static/``. Only these names are served
    (an allowlist, matched exactly: no file-system path is ever built from the request).
``GET /api/info``
    ``predictor.info()`` as JSON.
``POST /api/predict``
    Raw image bytes as the body, ``Content-Type: image/png`` or ``image/jpeg`` (at most
    :data:`MAX_BODY_BYTES`) -> ``predictor.predict_image(body)`` as JSON.

Every error is a JSON body ``{"error": "<one line>"}`` with a 4xx status (500 when the
predictor fails unexpectedly, 503 when it stays busy too long); the server keeps serving.
Error responses close the connection (the request body may be unread).

Logging: the default ``http.server`` access log on stderr is silenced. ``make_server(log=...)``
(and :func:`serve`, which passes its ``log``) gets one short line per request,
``127.0.0.1 "POST /api/predict" 200 0.042s``, plus a traceback when the predictor fails with
an unexpected exception (a 500). ``make_server`` without ``log`` logs nothing.

Parsing is strict, and every refusal is a full HTTP/1.1 response (status line, JSON body,
``Connection: close``), never http.server's bare HTTP/0.9-style body: a request line other than
``METHOD target HTTP/1.x`` (garbage, an HTTP/0.9 request, an HTTP/2 connection preface), a
malformed or folded header line, a NUL/CR/LF in a header value, more than one ``Host``,
``Content-Length`` or ``Content-Type`` header (the request-smuggling classics), or an HTTP/1.1
request without ``Host`` is a 400.

When bound to a loopback address, requests whose ``Host`` header names another machine are
refused (403), and an empty ``Host`` is a 400: this stops a web page on another origin from
reaching the server through DNS rebinding.

Threads stay bounded: the request line and headers must arrive within :data:`HEADER_DEADLINE_S`
of the request's start (a whole-phase deadline: a client trickling a byte every few seconds
is cut off, the connection closed), the body within :data:`BODY_DEADLINE_S`, and at most
:data:`MAX_CONNECTIONS` connections are served at once (one thread each); a connection beyond
that is answered 503 (``Retry-After: 1``) and closed by the accepting thread, without a thread.
"""
from __future__ import annotations

import email.errors
import io
import ipaddress
import json
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Protocol

from ensemble_cnn.data.reader import DATA_FILES, read_regular
from ensemble_cnn.errors import DataError, NoInkError

__all__ = ["MAX_BODY_BYTES", "Predictor", "make_server", "serve", "server_url"]

MAX_BODY_BYTES = 2 * 1024 * 1024
"""Largest accepted image upload, in bytes (checked on ``Content-Length`` before reading)."""

READ_TIMEOUT_S = 30.0
"""Socket timeout of each read on a connection (request line, headers, each body chunk)."""

HEADER_DEADLINE_S = 10.0
"""Whole-header deadline: the request line and headers must arrive within this many seconds of the
request's start (an idle kept-alive connection is closed then too). Per-read timeouts alone would
let a client sending a byte every few seconds hold a thread for ever."""

MAX_CONNECTIONS = 64
"""Connections served at once, one thread each; the next one gets a 503 and is closed."""

BODY_DEADLINE_S = 60.0
"""Whole-body deadline: a client trickling its upload cannot hold a thread longer than this."""

PREDICTOR_WAIT_S = 120.0
"""How long a request waits for the predictor (busy with other requests) before a 503."""

DRAIN_BYTES, DRAIN_S = 4 * MAX_BODY_BYTES, 2.0
"""After an error response to a request whose body was not read, at most this much of it is
read and dropped (so a client still sending gets the response, not a connection reset)."""

IMAGE_TYPES = frozenset({"image/png", "image/jpeg"})

# Allowlist of static files: request path -> (file name in ensemble_cnn/static, Content-Type).
STATIC_FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
API_INFO = "/api/info"
API_PREDICT = "/api/predict"
ALLOWED_METHODS: dict[str, tuple[str, ...]] = {
    **{path: ("GET", "HEAD") for path in STATIC_FILES},
    API_INFO: ("GET", "HEAD"),
    API_PREDICT: ("POST",),
}

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}

_DIGITS = re.compile(r"[0-9]{1,18}")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # RFC 9110 token: a method or a header name
_REQUEST_LINE = re.compile(_TOKEN + r" [\x21-\x7e]+ HTTP/1\.[0-9]")  # RFC 9112 request-line, HTTP/1.x
_HEADER_NAME = re.compile(_TOKEN)
_BAD_VALUE_CHARACTERS = re.compile(r"[\x00\r\n]")  # NUL, and CR/LF left by obs-fold continuation lines
_SINGLE_HEADERS = ("Host", "Content-Length", "Content-Type")
"""Headers that must not be repeated: two values would let two parsers disagree on the request."""
_HEADER_SECTION_DEFECTS = (
    email.errors.MissingHeaderBodySeparatorDefect,  # a line without a colon, or space before it
    email.errors.FirstHeaderLineIsContinuationDefect,  # the first header line starts with a space
)
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_MAX_MESSAGE = 300


class Predictor(Protocol):
    """What the server calls: the model side of ``ensemble-cnn serve``."""

    def predict_image(self, data: bytes) -> dict: ...

    def info(self) -> dict: ...


class _HttpError(Exception):
    """A request refused with ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str, *, allow: tuple[str, ...] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.allow = allow


def one_line(text: object, *, fallback: str = "error") -> str:
    """First non-empty line of ``text``, stripped and cut to a readable length."""
    for line in str(text).splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"
    return fallback


def _request_line_problem(line: str) -> str:
    """The one-line error message for a request line that is not ``METHOD target HTTP/1.x``."""
    words = line.split()
    shown = one_line(line)[:100]
    if len(words) == 3 and words[2].startswith("HTTP/") and not words[2].startswith("HTTP/1."):
        return f"unsupported HTTP version {one_line(words[2])[:20]!r} in {shown!r}: this server speaks HTTP/1.1"
    return f"malformed request line {shown!r}: expected 'METHOD /path HTTP/1.1'"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is only reachable from this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _json_default(value: Any) -> Any:
    """Let NumPy scalars and arrays through ``json.dumps`` (they have ``tolist``)."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _load_static() -> dict[str, bytes]:
    folder = resources.files("ensemble_cnn.inference") / "static"
    files = {}
    for name in sorted({name for name, _ in STATIC_FILES.values()}):
        try:  # the one guarded open: a regular file of at most 1 MiB, never a FIFO or device
            files[name] = read_regular(folder / name, limit=1 << 20, what="static page", voice=DATA_FILES)
        except DataError as error:
            raise FileNotFoundError(
                f"ensemble_cnn/inference/static/{name} is missing or unusable ({error}): the package was installed "
                "without its static files (package data)"
            ) from error
    return files


class _DeadlineReader(io.RawIOBase):
    """A connection's bytes, each read waiting at most :data:`READ_TIMEOUT_S` and never past the
    handler's current deadline (``_read_deadline``, a :func:`time.monotonic` time, or None)."""

    def __init__(self, connection: socket.socket, handler: "_Handler") -> None:
        super().__init__()
        self._connection = connection
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        wait = READ_TIMEOUT_S
        deadline = self._handler._read_deadline
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError("the request's deadline passed")
        self._connection.settimeout(wait)
        return self._connection.recv_into(buffer)


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer holding the predictor, its lock, the static files, the log and the
    connection slots (at most ``max_connections`` handler threads)."""

    daemon_threads = True
    request_queue_size = 128  # listen() backlog; socketserver's 5 drops bursts of connections
    predictor: Predictor
    predictor_lock: threading.Lock
    static: dict[str, bytes]
    log: Callable[[str], None] | None
    check_host: bool
    allowed_hosts: frozenset[str]
    header_deadline_s: float
    max_connections: int
    connection_slots: threading.BoundedSemaphore

    def process_request(self, request, client_address) -> None:
        """A thread for the connection if a slot is free; else a 503 from this (accepting) thread, and close."""
        if not self.connection_slots.acquire(blocking=False):
            self._refuse_busy(request, client_address)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connection_slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connection_slots.release()

    @staticmethod
    def _discard_received(request: socket.socket) -> None:
        """Read and drop what a non-blocking socket holds (a bounded amount: its receive buffer)."""
        try:
            for _ in range(64):
                if not request.recv(65536):
                    return
        except BlockingIOError:
            pass

    def _refuse_busy(self, request: socket.socket, client_address) -> None:
        """Answer 503 without blocking: drop what the client already sent (so closing does not reset the
        connection before it reads the answer), send the answer if the socket takes it, give up otherwise."""
        message = f"too many connections (at most {self.max_connections} at once): try again"
        body = json.dumps({"error": message}).encode("utf-8")
        head = [f"HTTP/1.1 {HTTPStatus.SERVICE_UNAVAILABLE.value} {HTTPStatus.SERVICE_UNAVAILABLE.phrase}",
                "Content-Type: application/json", f"Content-Length: {len(body)}", "Retry-After: 1",
                *(f"{name}: {value}" for name, value in SECURITY_HEADERS.items()), "Connection: close"]
        try:
            request.setblocking(False)
            self._discard_received(request)
            request.send(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            self._discard_received(request)  # what came meanwhile
        except OSError:
            pass
        if self.log is not None:
            self.log(f"{client_address[0]} refused: {message}")

    def handle_error(self, request, client_address) -> None:
        """A client that went away is normal; anything else gets one line (not a traceback)."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)) or self.log is None:
            return
        self.log(f"{client_address[0]} connection error: {type(error).__name__}: {one_line(error)}")


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "ensemble-cnn"
    sys_version = ""
    timeout = READ_TIMEOUT_S  # StreamRequestHandler.setup() puts it on the socket.

    # ---- parsing --------------------------------------------------------------------------
    def parse_request(self) -> bool:
        """http.server's parsing, made strict (see the module docstring); False once refused.

        Returns
        -------
        bool
            True when the request may be dispatched; False when the connection is to be closed,
            after a 400 has been sent (or silently, for a blank request line, as http.server).
        """
        line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        if line.strip() and not _REQUEST_LINE.fullmatch(line):
            # Reset what a previous request on this connection left (a stale HEAD drops the body).
            self.command, self.path, self.requestline = None, "", line
            self.send_error(HTTPStatus.BAD_REQUEST, _request_line_problem(line))
            return False
        if not super().parse_request():
            return False
        self._end_deadline()  # the header section is in; a body gets its own deadline
        problem = self._header_problem()
        if problem is not None:
            self.send_error(HTTPStatus.BAD_REQUEST, problem)
            return False
        return True

    def _header_problem(self) -> str | None:
        """Why the parsed header section is refused, or None when it is acceptable."""
        headers = self.headers
        if headers.get_unixfrom() is not None or any(
            isinstance(defect, _HEADER_SECTION_DEFECTS) for defect in headers.defects
        ):
            return "malformed header line: expected 'Name: value'"
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                return f"malformed header name {one_line(name)[:60]!r}"
            if _BAD_VALUE_CHARACTERS.search(value):
                return f"malformed {name} header: line folding, NUL, CR and LF are not accepted"
        for name in _SINGLE_HEADERS:
            if len(headers.get_all(name) or ()) > 1:
                return f"more than one {name} header"
        if "Host" not in headers and self.request_version != "HTTP/1.0":
            return "missing Host header (required by HTTP/1.1)"
        return None

    # ---- dispatch -------------------------------------------------------------------------
    def __getattr__(self, name: str):
        # BaseHTTPRequestHandler looks up do_<METHOD>; answer every method (PUT, OPTIONS, FOO, ...)
        # here so that a wrong method gets a JSON 405/404 instead of the default HTML 501.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def setup(self) -> None:
        """http.server's setup, with the request read through :class:`_DeadlineReader` (deadlines per phase)."""
        super().setup()
        self._read_deadline: float | None = None
        self.rfile.close()  # the plain socket file: only its reference to the socket goes
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self))

    def _end_deadline(self) -> None:
        """No deadline on reads until the next phase sets one; writes wait :data:`READ_TIMEOUT_S` again
        (not whatever was left of the deadline at the last read)."""
        self._read_deadline = None
        self.connection.settimeout(READ_TIMEOUT_S)

    def handle_one_request(self) -> None:
        self._started = time.monotonic()
        self._read_deadline = self._started + self.server.header_deadline_s  # request line and headers
        self._body_pending = False
        self._expect_continue = False
        super().handle_one_request()

    def handle_expect_100(self) -> bool:
        # Send "100 Continue" only once the request passed its checks (see _read_body), so a
        # client announcing a too-large or badly typed body is refused before it sends it.
        self._expect_continue = True
        return True

    def _dispatch(self) -> None:
        self._body_pending = self._announces_body()
        method = self.command
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        try:
            self._check_host()
            allowed = ALLOWED_METHODS.get(path)
            if allowed is None:
                raise _HttpError(HTTPStatus.NOT_FOUND, f"not found: {one_line(path)[:100]}")
            if method not in allowed:
                raise _HttpError(
                    HTTPStatus.METHOD_NOT_ALLOWED, f"method {method} not allowed on {path}", allow=allowed
                )
            if path in STATIC_FILES:
                name, content_type = STATIC_FILES[path]
                self._send(HTTPStatus.OK, self.server.static[name], content_type)
            elif path == API_INFO:
                self._send_json(HTTPStatus.OK, self._call_predictor(lambda p: p.info(), "run info failed"))
            else:
                self._predict()
        except _HttpError as error:
            self._send_error_json(error.status, error.message, allow=error.allow)

    # ---- routes ---------------------------------------------------------------------------
    def _predict(self) -> None:
        if self.headers.get("Transfer-Encoding") is not None:
            raise _HttpError(HTTPStatus.LENGTH_REQUIRED, "chunked uploads are not supported: send Content-Length")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            raise _HttpError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        values = {value.strip() for value in lengths}
        if len(values) != 1 or not re.fullmatch(r"[0-9]+", next(iter(values))):
            raise _HttpError(HTTPStatus.BAD_REQUEST, "malformed Content-Length")
        text = next(iter(values)).lstrip("0") or "0"
        length = int(text) if _DIGITS.fullmatch(text) else None  # None: over 18 digits, far beyond the limit
        if length is None or length > MAX_BODY_BYTES:
            declared = f"{text} bytes" if len(text) <= 40 else f"a {len(text)}-digit number of bytes"
            raise _HttpError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"image too large: Content-Length declares {declared}, over the limit of {MAX_BODY_BYTES} "
                f"bytes ({MAX_BODY_BYTES // (1024 * 1024)} MB)",
            )
        content_type = self.headers.get_content_type()  # lower case, parameters dropped
        if "Content-Type" not in self.headers or content_type not in IMAGE_TYPES:
            given = self.headers.get("Content-Type", "none")
            raise _HttpError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"unsupported Content-Type {one_line(given, fallback='none')[:80]}: send image/png or image/jpeg",
            )
        if length == 0:
            raise _HttpError(HTTPStatus.BAD_REQUEST, "empty body: send the image's bytes")
        body = self._read_body(length)
        self._send_json(HTTPStatus.OK, self._call_predictor(lambda p: p.predict_image(body), "prediction failed"))

    def _read_body(self, length: int) -> bytes:
        if self._expect_continue:
            self.send_response_only(HTTPStatus.CONTINUE)
            self.end_headers()
        self._read_deadline = time.monotonic() + BODY_DEADLINE_S  # each read stops there (_DeadlineReader)
        chunks, remaining = [], length
        try:
            while remaining > 0:
                chunk = self.rfile.read1(min(remaining, 65536))
                if not chunk:
                    raise _HttpError(
                        HTTPStatus.BAD_REQUEST,
                        f"body shorter than Content-Length ({length - remaining} of {length} bytes)",
                    )
                chunks.append(chunk)
                remaining -= len(chunk)
        except TimeoutError:
            raise _HttpError(HTTPStatus.REQUEST_TIMEOUT, "timed out reading the request body") from None
        finally:
            self._end_deadline()
        self._body_pending = False
        return b"".join(chunks)

    def _call_predictor(self, call: Callable[[Predictor], Any], what: str) -> Any:
        """``call(predictor)`` under the lock: NoInkError -> 422, other ValueError -> 400, anything else -> 500."""
        lock = self.server.predictor_lock
        if not lock.acquire(timeout=PREDICTOR_WAIT_S):
            raise _HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "the model is busy: try again")
        try:
            return call(self.server.predictor)
        except NoInkError as error:  # a readable image with nothing drawn on it: not a digit
            raise _HttpError(HTTPStatus.UNPROCESSABLE_ENTITY, one_line(error, fallback="no ink found")) from None
        except ValueError as error:
            raise _HttpError(HTTPStatus.BAD_REQUEST, one_line(error, fallback="bad image")) from None
        except Exception as error:  # noqa: BLE001 - the predictor's bug: answer 500, keep serving
            self._log_traceback()
            raise _HttpError(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                f"{what}: {type(error).__name__}: {one_line(error, fallback='no message')}",
            ) from None
        finally:
            lock.release()

    # ---- checks ---------------------------------------------------------------------------
    def _announces_body(self) -> bool:
        length = self.headers.get("Content-Length", "0").strip()
        return self.headers.get("Transfer-Encoding") is not None or length not in ("", "0")

    def _check_host(self) -> None:
        if not self.server.check_host:
            return
        host = self.headers.get("Host")
        if host is None:  # HTTP/1.0 clients may omit it (parse_request refuses it missing in HTTP/1.1)
            return
        host = host.strip().lower()
        if not host:
            raise _HttpError(HTTPStatus.BAD_REQUEST, "empty Host header: expected localhost or 127.0.0.1")
        if host.startswith("["):
            name = host[1:].split("]", 1)[0]
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        if name not in self.server.allowed_hosts:
            raise _HttpError(HTTPStatus.FORBIDDEN, f"unexpected Host header {one_line(host)[:100]!r}")

    # ---- responses ------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        close = self._body_pending or status >= 400
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload: Any) -> None:
        try:
            body = json.dumps(payload, allow_nan=False, default=_json_default, separators=(",", ":"))
        except (TypeError, ValueError) as error:
            self._log_traceback()
            raise _HttpError(
                HTTPStatus.INTERNAL_SERVER_ERROR, f"the model's answer is not valid JSON: {one_line(error)}"
            ) from None
        self._send(status, body.encode("utf-8"), "application/json")

    def _send_error_json(self, status: int, message: str, *, allow: tuple[str, ...] = ()) -> None:
        body = json.dumps({"error": one_line(message)}).encode("utf-8")
        headers = {"Allow": ", ".join(allow)} if allow else None
        self._send(status, body, "application/json", headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, headers too long, ...) as JSON too.

        Always a full HTTP/1.1 response: http.server leaves ``request_version`` at ``HTTP/0.9``
        (or unset) when the request line is bad, and then ``send_response`` would write neither
        the status line nor the headers, only the body.
        """
        self._body_pending = True  # the request was not understood: do not reuse the connection
        if not str(getattr(self, "request_version", "")).startswith("HTTP/1."):
            self.request_version = "HTTP/1.1"
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._send_error_json(code, message or phrase)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self.close_connection and getattr(self, "_body_pending", False):
                self._drain()

    def _drain(self) -> None:
        """Read and drop a little of an unread body after answering, so that a client still
        sending it gets the error response instead of a connection reset (bounded in bytes
        and time: the body's size was refused before any of it was read)."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            deadline, total = time.monotonic() + DRAIN_S, 0
            while total < DRAIN_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.connection.settimeout(left)
                data = self.connection.recv(65536)
                if not data:
                    break
                total += len(data)
        except OSError:
            pass

    # ---- logging --------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's stderr log (requests are logged by log_request)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.server.log is None:
            return
        status = getattr(code, "value", code)
        path = one_line(getattr(self, "path", "") or "", fallback="")[:120]
        elapsed = time.monotonic() - getattr(self, "_started", time.monotonic())
        command = self.command or "-"
        self.server.log(f'{self.client_address[0]} "{command} {path}" {status} {elapsed:.3f}s')

    def _log_traceback(self) -> None:
        if self.server.log is not None:
            self.server.log(traceback.format_exc().rstrip())


def make_server(
    predictor: Predictor,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log: Callable[[str], None] | None = None,
    header_deadline_s: float = HEADER_DEADLINE_S,
    max_connections: int = MAX_CONNECTIONS,
) -> ThreadingHTTPServer:
    """A bound (not yet serving) threading HTTP server for ``predictor``.

    ``port=0`` picks a free port: read it from ``server.server_address``. ``log`` receives one
    line per request (default: nothing). ``header_deadline_s``: seconds a request's line and
    headers may take to arrive, in all (:data:`HEADER_DEADLINE_S`); ``max_connections``:
    connections served at once (:data:`MAX_CONNECTIONS`), a further one gets a 503. Raises
    ``ValueError`` for a deadline or cap that is not positive, ``OSError`` when the address
    cannot be bound, ``FileNotFoundError`` when the package's static files are missing.
    """
    if not header_deadline_s > 0:  # also refuses NaN
        raise ValueError(f"header_deadline_s must be a number of seconds > 0, got {header_deadline_s!r}")
    if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
        raise ValueError(f"max_connections must be an integer >= 1, got {max_connections!r}")
    static = _load_static()
    cls = _Server6 if ":" in host else _Server
    server = cls((host, port), _Handler)
    server.predictor = predictor
    server.predictor_lock = threading.Lock()
    server.static = static
    server.log = log
    server.check_host = is_loopback(host)
    server.allowed_hosts = _LOOPBACK_NAMES | {host.strip("[]").lower()}
    server.header_deadline_s = float(header_deadline_s)
    server.max_connections = max_connections
    server.connection_slots = threading.BoundedSemaphore(max_connections)
    return server


def server_url(server: ThreadingHTTPServer) -> str:
    """The address to open in a browser, e.g. ``http://127.0.0.1:8000/`` (loopback for a wildcard bind)."""
    host, port = server.server_address[:2]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def serve(
    predictor: Predictor,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log: Callable[[str], None] = print,
) -> None:
    """Serve the page for ``predictor`` until Ctrl-C, then close the server (no traceback)."""
    server = make_server(predictor, host=host, port=port, log=log)
    try:
        if not is_loopback(host):
            log(f"warning: listening on {host or 'all interfaces'}: the server is reachable from other "
                "machines (no authentication)")
        log(f"serving on {server_url(server)} (Ctrl-C to stop)")
        server.serve_forever()
    except KeyboardInterrupt:
        log("stopped")
    finally:
        server.server_close()
