"""The roster over REST: import (dry run or apply) and export; uploads of tables.

``POST /api/roster/import?dry_run=1`` takes the roster as the raw body (``Content-Type:
text/csv`` or the xlsx type) or as the one file of a ``multipart/form-data`` form, and answers
the diff summary (:mod:`scada.services.roster`); without ``dry_run`` it applies it as a new
configuration version. A bad roster is 422 with ``issues`` (every bad row and column: nothing
imported), a file of another type 415, over 8 MiB 413. ``GET /api/roster/export?format=xlsx``
downloads the roster. Both need the roster permissions (``roster.import``, ``roster.export``:
engineers and admins). Loop-thread only; the work runs in worker threads.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from billing.roster import FORMATS, RosterError
from scada.server.handlers.base import MAX_BODY_BYTES, ApiError, ApiHandler
from scada.services.config_versions import ConfigUnavailable, ProposalError
from scada.services.roster import RosterService

__all__ = [
    "CONTENT_TYPES",
    "FORMATS",
    "XLSX",
    "RosterExportApi",
    "RosterImportApi",
    "Upload",
    "read_upload",
]

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: Content types of the roster formats (uploads and downloads).
CONTENT_TYPES = {"csv": "text/csv", "xlsx": XLSX}
_TYPES = {
    "text/csv": "csv",
    "application/csv": "csv",
    "text/plain": "csv",
    XLSX: "xlsx",
}
#: Content types that say nothing of the format (browsers send these for .csv files too): the
#: file name, else the bytes decide (an xlsx workbook is a zip file).
_VAGUE = ("application/octet-stream", "application/vnd.ms-excel", "")


class Upload:
    """An uploaded table: its bytes, format (``csv`` / ``xlsx``) and file name."""

    def __init__(self, data: bytes, fmt: str, name: str) -> None:
        self.data = data
        self.fmt = fmt
        self.name = name


def _format(
    content_type: str, data: bytes, formats: tuple[str, ...], filename: str | None = None
) -> str | None:
    """Return the format of an upload: its content type, else its file name or its bytes."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in _TYPES:
        return _TYPES[kind]
    if kind not in _VAGUE and filename is None:
        return None  # a raw body of another type (JSON, ...): refused
    suffix = PurePosixPath(filename or "").suffix.lower().lstrip(".")
    if suffix in formats:
        return suffix
    if "xlsx" in formats and data.startswith(b"PK\x03\x04"):  # a workbook is a zip file
        return "xlsx"
    return formats[0] if len(formats) == 1 else "csv"


def read_upload(handler: ApiHandler, formats: tuple[str, ...] = FORMATS) -> Upload:
    """Return the table a request carries: the raw body, or the one file of a multipart form.

    413 over ``MAX_BODY_BYTES``, 415 for a type not in ``formats``, 422 for an empty upload or
    a form without exactly one file.
    """
    request = handler.request
    if len(request.body or b"") > MAX_BODY_BYTES:
        raise ApiError(413, f"body larger than {MAX_BODY_BYTES} bytes")
    content_type = request.headers.get("Content-Type", "")
    if content_type.split(";")[0].strip().lower() == "multipart/form-data":
        files = [f for parts in request.files.values() for f in parts]
        if len(files) != 1:
            raise ApiError(422, f"send one file in the form (got {len(files)})")
        part = files[0]
        name = PurePosixPath(part.filename or "upload").name
        data = part.body
        fmt = _format(part.content_type or "", data, formats, name)
    else:
        name = "upload"
        data = request.body or b""
        fmt = _format(content_type, data, formats)
    accepted = ", ".join(CONTENT_TYPES[f] for f in formats)
    if fmt not in formats:
        raise ApiError(415, f"send {accepted} (raw, or as the file of a multipart form)")
    if not data.strip():
        raise ApiError(422, f"the upload is empty: send {accepted}")
    return Upload(data, fmt, name)


class _RosterBase(ApiHandler):
    def service(self) -> RosterService:
        config = self.ctx.config
        if config is None or config.main is None:
            raise ApiError(409, "the running configuration was not read from files")
        billing = self.ctx.services.billing
        return RosterService(config, lambda: None if billing is None else billing.ledger)


class RosterImportApi(_RosterBase):
    """``POST /api/roster/import?dry_run=1``: the diff summary, or apply it (module docstring)."""

    async def post(self) -> None:
        upload = read_upload(self)
        dry_run = self.arg_bool("dry_run")
        service = self.service()
        try:
            result = await service.import_roster(
                self.user,
                upload.data,
                upload.fmt,
                dry_run=dry_run,
                name=upload.name,
                source=self.source,
            )
        except RosterError as exc:
            issues = [i.to_json() for i in exc.issues]
            raise ApiError(422, str(exc), issues=issues) from None
        except (ProposalError, ConfigUnavailable) as exc:
            raise ApiError(422, str(exc)) from None
        self.reply(result, 200 if result["valid"] else 422)


class RosterExportApi(_RosterBase):
    """``GET /api/roster/export?format=xlsx|csv``: the roster of the running site (a download)."""

    async def get(self) -> None:
        fmt = self.arg("format") or ""
        if fmt not in FORMATS:
            raise ApiError(400, f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
        service = self.service()
        data: Any = await self.ctx.run_blocking(service.export, fmt)
        site = self.ctx.services.plant.site.site.id
        self.set_header("Content-Type", CONTENT_TYPES[fmt])
        self.set_header("Content-Disposition", f'attachment; filename="roster-{site}.{fmt}"')
        self.set_header("Cache-Control", "no-store")
        self.finish(data)
