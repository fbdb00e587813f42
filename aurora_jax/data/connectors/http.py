"""A small JSON-over-HTTP GET client: rate limit, deadline, retries with backoff.

``HttpClient.get_json`` waits for a token (:class:`TokenBucket`), sends one GET through the
``transport`` (urllib by default; tests inject nothing but a local server URL), and

- returns the parsed JSON of a 2xx answer;
- retries 429/418/5xx, timeouts, connection errors and truncated/invalid JSON up to
  ``settings.max_retries`` times, sleeping ``Retry-After`` when the server sends it and
  otherwise the jittered exponential backoff of :mod:`.retry`;
- raises :class:`ConnectorError` (URL, status code, the server's own message) at once on any
  other 4xx, and after the last retry otherwise.

Clock, sleep and the jitter's random generator are injectable so tests never really wait.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from aurora_jax.data.connectors.ratelimit import Clock, Sleep, TokenBucket
from aurora_jax.data.connectors.retry import backoff_delay, is_retryable_status, parse_retry_after
from aurora_jax.data.connectors.settings import ConnectorSettings
from aurora_jax.errors import ConnectorError


@dataclass(frozen=True)
class HttpResponse:
    """What a transport returns for any answer, success or error (headers lower-cased)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class TransportError(OSError):
    """A transport-level failure that is worth a retry (timeout, short body, ...)."""


Transport = Callable[[str, float, Mapping[str, str]], HttpResponse]


def urllib_transport(url: str, timeout_s: float, headers: Mapping[str, str]) -> HttpResponse:
    """GET ``url`` with the standard library. ``timeout_s`` bounds connecting and each socket
    read, and the whole body is abandoned once ``timeout_s`` has passed since the start. A body
    shorter than its ``Content-Length`` raises :class:`TransportError`."""
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url, headers=dict(headers), method="GET")
    try:
        resp = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as err:  # a 4xx/5xx answer: still a response with a body
        resp = err
    with resp:
        status = int(getattr(resp, "status", None) or resp.code)
        hdrs = {k.lower(): v for k, v in resp.headers.items()}
        chunks: list[bytes] = []
        while True:
            if time.monotonic() > deadline:
                raise TransportError(f"timed out after {timeout_s:g} s while reading the body")
            chunk = resp.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    body = b"".join(chunks)
    declared = hdrs.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) != len(body):
        raise TransportError(f"truncated body: received {len(body)} of {declared} bytes")
    return HttpResponse(status=status, headers=hdrs, body=body)


@dataclass
class ClientStats:
    """Counters of one client: requests sent (attempts), retries, seconds slept in backoff."""

    requests: int = 0
    retries: int = 0
    backoff_s: float = 0.0


def server_message(body: bytes, limit: int = 300) -> str:
    """The server's own error text: Binance ``{"code","msg"}``, Deribit JSON-RPC ``error``,
    or the start of the body."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace").strip()
        return text[:limit] if text else "(empty body)"
    if isinstance(payload, dict):
        if "msg" in payload:
            return f"code {payload.get('code')}: {payload['msg']}"
        err = payload.get("error")
        if isinstance(err, dict):
            data = err.get("data")
            extra = f" {json.dumps(data, separators=(',', ':'))}" if data else ""
            return f"code {err.get('code')}: {err.get('message')}{extra}"
    return json.dumps(payload)[:limit]


class HttpClient:
    """Rate-limited, retrying JSON GET client (one token bucket shared by all its requests)."""

    def __init__(
        self,
        settings: ConnectorSettings,
        *,
        transport: Transport = urllib_transport,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.sleep = sleep
        self.rng = rng if rng is not None else np.random.default_rng()
        self.limiter = TokenBucket(
            settings.rate_limit_per_s, settings.rate_limit_burst, clock=clock, sleep=sleep
        )
        self.stats = ClientStats()

    @staticmethod
    def build_url(base_url: str, path: str, params: Mapping[str, Any]) -> str:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return f"{base_url.rstrip('/')}/{path.lstrip('/')}" + (f"?{query}" if query else "")

    def get_json(self, base_url: str, path: str, params: Mapping[str, Any]) -> Any:
        """GET ``base_url/path?params`` and return the decoded JSON (see module docstring)."""
        s = self.settings
        url = self.build_url(base_url, path, params)
        headers = {"User-Agent": s.user_agent, "Accept": "application/json"}
        attempt = 0
        while True:
            self.limiter.acquire()
            self.stats.requests += 1
            status: int | None = None
            retry_after: float | None = None
            try:
                resp = self.transport(url, s.timeout_s, headers)
            except (OSError, http.client.HTTPException) as exc:  # timeouts, refused, reset
                reason = f"transport error: {_describe(exc)}"
            else:
                status = resp.status
                if 200 <= status <= 299:
                    try:
                        return json.loads(resp.body)
                    except (ValueError, UnicodeDecodeError) as exc:
                        reason = (f"invalid JSON in a {status} answer "
                                  f"({len(resp.body)} bytes): {exc}")
                elif is_retryable_status(status):
                    reason = f"HTTP {status} ({server_message(resp.body)})"
                    retry_after = parse_retry_after(resp.headers.get("retry-after"))
                else:
                    raise ConnectorError(
                        url, f"HTTP {status} ({server_message(resp.body)}); not retried",
                        status_code=status)
            if attempt >= s.max_retries:
                raise ConnectorError(
                    url, f"failed after {attempt + 1} attempts ({s.max_retries} retries); "
                         f"last error: {reason}", status_code=status)
            if retry_after is not None:
                if retry_after > s.max_retry_after_s:
                    raise ConnectorError(
                        url, f"{reason}; server asks to wait Retry-After={retry_after:g} s, more "
                             f"than max_retry_after_s={s.max_retry_after_s:g}", status_code=status)
                delay = retry_after
            else:
                delay = backoff_delay(attempt, s.backoff_base_s, s.backoff_cap_s, s.jitter,
                                      self.rng)
            self.stats.retries += 1
            self.stats.backoff_s += delay
            self.sleep(delay)
            attempt += 1


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and exc.reason is not None:
        inner = exc.reason
        return f"{type(inner).__name__}: {inner}" if isinstance(inner, BaseException) else str(inner)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
