"""The client's wire: the token, requests and their errors, pages, waiting.

Every error answer becomes an :class:`ApiError` carrying the problem details; 401, 403,
404 and 422 become the subclasses that are disgorge's own error classes too. The token
goes in the ``Authorization`` header only: it is in no ``repr``, URL or message.
"""

from __future__ import annotations

import ipaddress
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from .._version import __version__
from ..errors import DisgorgeError, Forbidden, InvalidInput, NotFound, Unauthenticated

if TYPE_CHECKING:
    import ssl

__all__ = [
    "ApiError",
    "ApiForbidden",
    "ApiInvalidInput",
    "ApiNotFound",
    "ApiUnauthenticated",
    "TokenInClearWarning",
    "Transport",
    "WaitTimedOut",
    "sends_token_in_clear",
]

T = TypeVar("T")


class ApiError(DisgorgeError):
    """An error answer of the API (RFC 9457 problem details), or no answer at all (``status`` 0)."""

    def __init__(self, status: int, type: str, detail: str, title: str = "") -> None:
        super().__init__(f"{detail} (HTTP {status})" if status else detail)
        self.status = status
        #: ``urn:disgorge:problem:...`` (docs/api.md); ``urn:disgorge:client:...`` without an answer
        self.type = type
        self.detail = detail
        self.title = title


class ApiUnauthenticated(ApiError, Unauthenticated):
    """401: no token, or one that is unknown, expired or revoked, or its principal disabled."""


class ApiForbidden(ApiError, Forbidden):
    """403: the principal's role lacks the scope, or a rule (two-person approval) says no."""


class ApiNotFound(ApiError, NotFound):
    """404: no such request, subject, source, model, job..."""


class ApiInvalidInput(ApiError, InvalidInput):
    """422: a body or parameter the server cannot use; ``detail`` says which and why."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: ApiUnauthenticated,
    403: ApiForbidden,
    404: ApiNotFound,
    422: ApiInvalidInput,
}


class WaitTimedOut(DisgorgeError, TimeoutError):
    """A wait for a job or an erasure (``wait_job``, ``wait_erasure``) ran out of time."""

    status = 504


class TokenInClearWarning(UserWarning):
    """The token is about to be sent over plain http to another machine."""


def sends_token_in_clear(base_url: str) -> bool:
    """Whether ``base_url`` is ``http://`` to a host other than this machine (loopback)."""
    parts = urlsplit(base_url)
    if parts.scheme != "http":
        return False
    host = (parts.hostname or "").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def params(**given: Any) -> dict[str, Any]:
    """Query parameters without the ones left out (None)."""
    return {k: v for k, v in given.items() if v is not None}


def seg(value: str) -> str:
    """``value`` as one path segment: nothing in it can reach another route."""
    return quote(value, safe="")


class Transport:
    """An HTTP session with a disgorge server at ``base_url``, as the holder of ``token``.

    ``timeout`` is per request (seconds); ``verify`` is httpx's: ``True``, an
    :class:`ssl.SSLContext` trusting your CA, or ``False`` (never outside a test). A
    ``GET`` answered ``503`` (the server is busy) is tried again ``retries`` times, after
    the ``Retry-After`` it names (10 s at most). Lists come ``page_size`` items a request.
    Redirects are not followed: one could take the token to another host.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        verify: bool | ssl.SSLContext = True,
        retries: int = 2,
        page_size: int = 100,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput("the server's URL must be http(s)://HOST[:PORT][/PATH]")
        if not token or any(ch.isspace() or not ch.isprintable() for ch in token):
            raise InvalidInput("the token is empty or holds white space")
        if sends_token_in_clear(base_url):
            warnings.warn(
                f"{parts.scheme}://{parts.netloc} is plain http to another machine: "
                "the token travels in clear (use https)",
                TokenInClearWarning,
                stacklevel=3,
            )
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.page_size = max(1, min(page_size, 1000))
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": f"disgorge-client/{__version__}",
            },
            timeout=timeout,
            verify=verify,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, method: str, path: str, query: Mapping[str, Any] | None, body: Any) -> httpx.Response:
        tries = 0
        while True:
            try:
                answer = self._http.request(method, path, params=query, json=body)
            except httpx.TimeoutException:
                raise ApiError(
                    0, "urn:disgorge:client:timeout", f"{self.base_url}: no answer in time"
                ) from None
            except httpx.TransportError as exc:
                why = f"cannot reach {self.base_url}: {exc}"
                raise ApiError(0, "urn:disgorge:client:unreachable", why) from None
            if answer.status_code != 503 or method != "GET" or tries >= self.retries:
                return answer
            tries += 1
            after = answer.headers.get("Retry-After", "1")
            time.sleep(min(float(after), 10.0) if after.isdigit() else 1.0)

    @staticmethod
    def _raise(answer: httpx.Response) -> None:
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {"detail": f"{answer.reason_phrase or 'error'} (not a problem document)"}
        raise _BY_STATUS.get(answer.status_code, ApiError)(
            answer.status_code,
            str(body.get("type") or "about:blank"),
            str(body.get("detail") or body.get("error") or answer.reason_phrase),
            str(body.get("title") or ""),
        )

    def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None
    ) -> Any:
        """Any endpoint (``path`` starts with ``/v1/``): its JSON answer, ``None`` for an
        empty one; :class:`ApiError` for an error answer (or a redirect)."""
        answer = self._send(method, path, params, json)
        if answer.status_code >= 300:
            self._raise(answer)
        return answer.json() if answer.content else None

    def request_bytes(self, path: str, *, params: Mapping[str, Any] | None = None) -> bytes:
        """A ``GET`` whose answer is bytes (a photo, a file)."""
        answer = self._send("GET", path, params, None)
        if answer.status_code >= 300:
            self._raise(answer)
        return answer.content

    def pages(self, path: str, **filters: Any) -> Iterator[Any]:
        """Every item of a list endpoint, page after page (filters left None are not sent)."""
        offset: int | None = 0
        while offset is not None:
            query = {**params(**filters), "limit": self.page_size, "offset": offset}
            body = self.request("GET", path, params=query)
            yield from body["items"]
            offset = body.get("next_offset")

    @staticmethod
    def poll(
        read: Callable[[], T],
        done: Callable[[T], bool],
        said: Callable[[T], str],
        timeout: float,
        interval: float,
    ) -> T:
        """``read()`` until ``done`` says so; :class:`WaitTimedOut` after ``timeout`` seconds,
        with what ``said`` tells of the last value read."""
        deadline = time.monotonic() + timeout
        while True:
            value = read()
            if done(value):
                return value
            if time.monotonic() >= deadline:
                raise WaitTimedOut(f"{said(value)} after {timeout:g} s")
            time.sleep(interval)
