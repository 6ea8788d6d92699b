"""OpenLineage run events for dataset builds and runs.

Off by default. With ``[openlineage] transport`` set in ``.disgorge/config.toml`` the
workspace sends one RunEvent per transition of every run (``START``, then ``COMPLETE``
or ``FAIL``) and a ``COMPLETE`` event for every new dataset version::

    [openlineage]
    transport = "file"              # none | console | file | http
    path = "openlineage.jsonl"      # file: JSON lines, appended (relative to .disgorge)
    url = ""                        # http: a lineage backend, e.g. http://marquez:5000

Events are built with the ``openlineage-python`` client's model and transports (the
optional ``lineage`` extra), but not through ``OpenLineageClient``: the client merges
ambient configuration (``openlineage.yml``, ``OPENLINEAGE__*`` variables) and may add
facets of its own (environment variables, git details). disgorge sends exactly the event
it builds, and :meth:`OpenLineageEmitter.emit` returns it.

What an event names: the job, and datasets at the level of a dataset version, a source or
an artifact (``dataset:faces@1.0.0``, ``source:lfw``, ``model:face-id@1``); never a
subject, an external id or a photo. The purpose goes into the custom run facet
``disgorge_purpose``. docs/standards.md has the full mapping.
"""

from __future__ import annotations

import importlib
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._time import iso, parse_instant
from ..config import Config
from ..errors import DisgorgeError, InvalidInput, WorkspaceError

if TYPE_CHECKING:
    from openlineage.client.transport.transport import Transport

__all__ = ["EVENT_TYPES", "TRANSPORTS", "OpenLineageEmitter"]

TRANSPORTS = ("none", "console", "file", "http")
EVENT_TYPES = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")
#: lineage-node kinds that name one person or one photo: never sent
_PERSONAL_KINDS = ("subject", "asset")
#: the OpenLineage HTTP API path, used when ``url`` is a bare server address
_DEFAULT_ENDPOINT = "api/v1/lineage"
_HTTP_TIMEOUT_S = 5.0
_HTTP_RETRY = {
    "total": 3,
    "read": 3,
    "connect": 3,
    "backoff_factor": 0.3,
    "status_forcelist": [500, 502, 503, 504],
    "allowed_methods": ["HEAD", "POST"],
}
_MISSING = (
    "OpenLineage transport {transport!r} is configured but the openlineage-python package is "
    "not installed: run `pip install 'disgorge[lineage]'`, or set `transport = \"none\"` in the "
    "[openlineage] section of {config}"
)


def _load_model() -> Any:
    """disgorge.interop._ol_model: needs openlineage-python (the ``lineage`` extra)."""
    return importlib.import_module(f"{__package__}._ol_model")


class OpenLineageEmitter:
    """Builds OpenLineage RunEvents and sends them through one transport."""

    def __init__(self, transport: Transport | None, kind: str, namespace: str, target: str = "") -> None:
        if not namespace:
            raise InvalidInput("an OpenLineage namespace is needed (e.g. disgorge://WORKSPACE_ID)")
        self._transport = transport
        self.kind = kind
        self.namespace = namespace
        #: where events go: the file path or the URL (empty for console / none)
        self.target = target
        self._model: Any = _load_model() if transport is not None else None

    @classmethod
    def from_config(cls, config: Config, namespace: str) -> OpenLineageEmitter:
        """The emitter the workspace config asks for (``[openlineage]`` section)."""
        kind = (config.openlineage_transport or "none").strip().lower()
        if kind not in TRANSPORTS:
            raise WorkspaceError(
                f"config: unknown OpenLineage transport {config.openlineage_transport!r} "
                f"(expected one of {', '.join(TRANSPORTS)})"
            )
        if kind == "none":
            return cls(None, kind, namespace)
        try:
            _load_model()
            transport, target = _make_transport(kind, config)
        except ImportError:
            raise DisgorgeError(_MISSING.format(transport=kind, config=config.home / "config.toml")) from None
        return cls(transport, kind, namespace, target)

    def emit(
        self,
        event_type: str,
        *,
        run_id: str,
        job: str,
        purpose: str,
        event_time: datetime,
        inputs: list[str],
        outputs: list[str],
    ) -> dict[str, Any]:
        """Send one RunEvent; returns it as the JSON-ready dict that was sent.

        ``run_id`` is disgorge's 32-hex run id (sent as the UUID it spells); ``inputs`` and
        ``outputs`` are dataset-level names. With transport ``none`` nothing is sent and
        an empty dict is returned.
        """
        if event_type not in EVENT_TYPES:
            raise InvalidInput(f"OpenLineage event type {event_type!r}: expected one of {EVENT_TYPES}")
        if not job.strip():
            raise InvalidInput("an OpenLineage event needs a job name")
        for name in (*inputs, *outputs):
            kind = name.partition(":")[0]
            if kind in _PERSONAL_KINDS:
                raise InvalidInput(
                    f"OpenLineage events name datasets, sources and artifacts, never a {kind}: "
                    "name the dataset version or source instead"
                )
        if self._transport is None:
            return {}
        try:
            event = self._model.build_event(
                event_type,
                namespace=self.namespace,
                run_id=run_id,
                job=job,
                purpose=purpose,
                event_time=iso(parse_instant(event_time, what="event time")),
                inputs=list(inputs),
                outputs=list(outputs),
            )
        except ValueError as exc:
            raise InvalidInput(f"OpenLineage {event_type} event of job {job!r}: {exc}") from None
        try:
            self._transport.emit(event)
        except (OSError, RuntimeError, ValueError) as exc:
            # requests' errors are OSErrors; the file transport wraps its errors in RuntimeError
            where = f" to {self.target}" if self.target else ""
            raise DisgorgeError(
                f"OpenLineage {self.kind} transport: could not send the {event_type} event of job "
                f"{job!r}{where}: {exc}"
            ) from None
        return self._model.to_dict(event)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _StderrTransport:
    """``console``: one JSON line per event on stderr (stdout stays free for ``--json``)."""

    kind = "console"

    def emit(self, event: Any) -> None:
        from openlineage.client.serde import Serde

        sys.stderr.write(Serde.to_json(event) + "\n")
        sys.stderr.flush()

    def close(self, timeout: float = -1) -> bool:
        return True


def _make_transport(kind: str, config: Config) -> tuple[Any, str]:
    if kind == "console":
        return _StderrTransport(), ""
    if kind == "file":
        from openlineage.client.transport.file import FileConfig, FileTransport

        path: Path = config.resolved_openlineage_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileTransport(FileConfig(log_file_path=str(path), append=True)), str(path)
    # http
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    url = config.openlineage_url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise WorkspaceError(
            f"config: OpenLineage transport http needs [openlineage] url = an http(s) URL, got {url!r}"
        )
    # a bare server address gets the standard API path; a URL with a path is the endpoint
    endpoint = _DEFAULT_ENDPOINT if parts.path in ("", "/") else ""
    http = HttpConfig.from_dict(
        {"url": url, "endpoint": endpoint, "timeout": _HTTP_TIMEOUT_S, "retry": dict(_HTTP_RETRY)}
    )
    target = url.rstrip("/") + "/" + endpoint if endpoint else url
    return HttpTransport(http), target
