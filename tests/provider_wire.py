"""Loopback HTTP servers speaking the OpenAI, Anthropic and Gemini streaming wire formats, with scripted
delays and failures, so tests run the official SDKs' real HTTP and SSE code offline.

Only the base URL differs from production. Responses stream with chunked transfer encoding, like the real
APIs, so dropping the socket mid-body is a real truncated response (the SDK sees an incomplete chunked
read), and a client that goes away is noticed as a failed write (`client_gone`).
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_TEXTS = ("Jane Austen wrote ", "Pride and Prejudice. ", "It was published in ", "eighteen thirteen.")


@dataclass
class Reply:
    """One scripted response.

    Parameters:
        texts: text deltas, one streaming event each.
        status: HTTP status; >= 400 sends the provider's JSON error body instead of a stream.
        error_type: the provider's error type/status string for that body (None: a typical one for `status`).
        error_message: the provider's message in that body.
        first_byte_s: wait this long before the status line (a slow first byte).
        gap_s: wait between events.
        cut_after: drop the connection after this many text events (a mid-stream disconnect).
        complete: send the provider's end marker ([DONE] / message_stop / finishReason).
        raw: send these bytes as the only event's data (a malformed stream).
        stream_error: after the texts, send the provider's in-stream error event of this type.
        headers: extra response headers (e.g. retry-after).
    """

    texts: tuple[str, ...] | list[str] = DEFAULT_TEXTS
    status: int = 200
    error_type: str | None = None
    error_message: str = "scripted failure"
    first_byte_s: float = 0.0
    gap_s: float = 0.0
    cut_after: int | None = None
    complete: bool = True
    raw: bytes | None = None
    stream_error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    """A request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


# ---------------------------------------------------------------------------------------- wire formats
def _sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, (bytes, str)) else json.dumps(data)
    payload = payload.decode() if isinstance(payload, bytes) else payload
    return ((f"event: {event}\n" if event else "") + f"data: {payload}\n\n").encode()


class OpenAIWire:
    path_suffix = "/chat/completions"
    url_suffix = "/v1"
    raw_event = None

    @staticmethod
    def error(status: int, kind: str | None, message: str) -> dict:
        kind = kind or {401: "invalid_api_key", 403: "invalid_api_key", 404: "model_not_found",
                        429: "rate_limit_exceeded"}.get(status, "server_error" if status >= 500 else "invalid_value")
        return {"error": {"message": message, "type": "invalid_request_error" if status < 429 else kind,
                          "param": None, "code": kind}}

    @staticmethod
    def events(model: str, texts, complete: bool) -> list[tuple[bytes, bool]]:
        def chunk(delta: dict, finish: str | None) -> bytes:
            return _sse({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        out = [(chunk({"role": "assistant", "content": t}, None), True) for t in texts]
        return out + ([(chunk({}, "stop"), False), (b"data: [DONE]\n\n", False)] if complete else [])

    @staticmethod
    def stream_error(kind: str) -> bytes:
        return _sse({"error": {"message": "scripted stream error", "type": kind, "code": kind}})


class AnthropicWire:
    path_suffix = "/v1/messages"
    url_suffix = ""
    raw_event = "content_block_delta"  # the SDK only parses events it knows by name

    @staticmethod
    def error(status: int, kind: str | None, message: str) -> dict:
        kind = kind or {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error",
                        529: "overloaded_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    @staticmethod
    def events(model: str, texts, complete: bool) -> list[tuple[bytes, bool]]:
        head = [
            _sse({"type": "message_start", "message": {
                "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": model,
                "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 1}}},
                "message_start"),
            _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                 "content_block_start"),
            _sse({"type": "ping"}, "ping"),
        ]
        out = [(e, False) for e in head]
        out += [(_sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}},
                      "content_block_delta"), True) for t in texts]
        if complete:
            out += [(e, False) for e in [
                _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                      "usage": {"output_tokens": 20}}, "message_delta"),
                _sse({"type": "message_stop"}, "message_stop"),
            ]]
        return out

    @staticmethod
    def stream_error(kind: str) -> bytes:
        return _sse({"type": "error", "error": {"type": kind, "message": "scripted stream error"}}, "error")


class GeminiWire:
    path_suffix = ":streamGenerateContent"
    url_suffix = ""
    raw_event = None

    @staticmethod
    def error(status: int, kind: str | None, message: str) -> dict:
        if kind == "API_KEY_INVALID":  # what Gemini really answers to a bad key: a 400 with a reason
            return {"error": {"code": status, "message": "API key not valid. Please pass a valid API key.",
                              "status": "INVALID_ARGUMENT", "details": [{
                                  "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": kind,
                                  "domain": "googleapis.com"}]}}
        kind = kind or {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                        429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}.get(status, "INTERNAL")
        return {"error": {"code": status, "message": message, "status": kind}}

    @staticmethod
    def events(model: str, texts, complete: bool) -> list[tuple[bytes, bool]]:
        def chunk(text: str, finish: str | None) -> bytes:
            cand: dict = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
            if finish:
                cand["finishReason"] = finish
            return _sse({"candidates": [cand], "modelVersion": model,
                         "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 30}})

        texts = list(texts)
        return [(chunk(t, "STOP" if complete and i == len(texts) - 1 else None), True)
                for i, t in enumerate(texts)]

    @staticmethod
    def stream_error(kind: str) -> bytes:
        return _sse({"error": {"code": 503, "message": "scripted stream error", "status": kind}})


WIRES = {"openai": OpenAIWire, "anthropic": AnthropicWire, "gemini": GeminiWire}


# ---------------------------------------------------------------------------------------------- server
class ProviderServer:
    """A provider's streaming endpoint on 127.0.0.1, answering each request with the next scripted `Reply`
    (a default successful stream when the script is empty). Use as a context manager."""

    def __init__(self, provider: str):
        self.provider, self.wire = provider, WIRES[provider]
        self.replies: list[Reply] = []
        self.requests: list[Recorded] = []
        self.client_gone = threading.Event()  # a write failed: the client closed the stream
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        """The base URL to give the SDK."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{self.wire.url_suffix}"

    def script(self, *replies: Reply) -> "ProviderServer":
        with self._lock:
            self.replies.extend(replies)
        return self

    def __enter__(self) -> "ProviderServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next(self) -> Reply:
        with self._lock:
            return self.replies.pop(0) if self.replies else Reply()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Small SSE writes must leave at once, as from a real API (Nagle + delayed ACK adds ~40 ms).
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # /models, for the reachability probe
                self._json(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n) if n else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                server.requests.append(Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                                                body))
                reply = server._next()
                if reply.first_byte_s and server._stop.wait(reply.first_byte_s):
                    return
                if not self.path.split("?")[0].endswith(server.wire.path_suffix):
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                elif reply.status >= 400:
                    self._json(reply.status, server.wire.error(reply.status, reply.error_type, reply.error_message),
                               reply.headers)
                else:
                    self._stream(reply, body)

            def _json(self, status: int, obj: Any, headers: dict | None = None) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, reply: Reply, body: Any) -> None:
                model = body.get("model", "gemini") if isinstance(body, dict) else "model"
                if reply.raw is not None:
                    events = [(_sse(reply.raw, server.wire.raw_event), False)]
                else:
                    events = server.wire.events(model, reply.texts, reply.complete and not reply.stream_error)
                    if reply.stream_error:
                        events.append((server.wire.stream_error(reply.stream_error), False))
                try:
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("transfer-encoding", "chunked")
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    sent_text = 0
                    for ev, is_text in events:
                        if reply.cut_after is not None and sent_text >= reply.cut_after:
                            # Mid-stream disconnect: no terminating chunk, the socket just goes away.
                            self.connection.shutdown(socket.SHUT_RDWR)
                            self.close_connection = True
                            return
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                        if is_text:
                            sent_text += 1
                            if reply.gap_s and server._stop.wait(reply.gap_s):
                                return
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    server.client_gone.set()
                    self.close_connection = True

        return Handler
