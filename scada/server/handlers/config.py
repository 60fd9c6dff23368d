"""Configuration API: get, validate, apply (hot, with a diff), versions, roll back.

See :mod:`scada.services.config_versions` for what applying does; every apply and rollback is
audited there.
"""

from __future__ import annotations

from typing import Any

from scada.server.handlers.base import ApiError, ApiHandler
from scada.server.schemas import ConfigProposal, RollbackBody
from scada.services.config_versions import ConfigUnavailable, ProposalError
from tags.model import iso

__all__ = [
    "ConfigApi",
    "ConfigApplyApi",
    "ConfigRollbackApi",
    "ConfigValidateApi",
    "ConfigVersionApi",
    "ConfigVersionsApi",
]


class _ConfigBase(ApiHandler):
    def manager(self) -> Any:
        mgr = self.ctx.config
        if mgr is None or mgr.main is None:
            raise ApiError(409, "the running configuration was not read from files")
        return mgr


def _meta(m: dict[str, Any]) -> dict[str, Any]:
    out = dict(m)
    out["time"] = iso(m.get("ts"))
    return out


class ConfigApi(_ConfigBase):
    """``GET /api/config``: the running bundle of files and its version."""

    async def get(self) -> None:
        mgr = self.manager()
        files = await self.ctx.run_blocking(mgr.current_files)
        self.reply({"version": mgr.current_version(), "main": mgr.main_name(), "files": files})


class ConfigValidateApi(_ConfigBase):
    """``POST /api/config/validate``: errors with locations, the diff and the plan."""

    async def post(self) -> None:
        body = self.body(ConfigProposal)
        mgr = self.manager()
        try:
            result = await mgr.validate(body.files)
        except (ProposalError, ConfigUnavailable) as exc:
            raise ApiError(422, str(exc)) from None
        self.reply(result)


class ConfigApplyApi(_ConfigBase):
    """``POST /api/config/apply``: validate, then apply hot and store a version."""

    async def post(self) -> None:
        body = self.body(ConfigProposal)
        mgr = self.manager()
        try:
            result = await mgr.apply(
                self.user, body.files, comment=body.comment, source=self.source
            )
        except (ProposalError, ConfigUnavailable) as exc:
            raise ApiError(422, str(exc)) from None
        self.reply(result, 200 if result["valid"] else 422)


class ConfigVersionsApi(_ConfigBase):
    """``GET /api/config/versions``: every stored version, newest first."""

    async def get(self) -> None:
        mgr = self.manager()
        versions = await self.ctx.run_blocking(mgr.versions)
        self.reply(
            {"current": mgr.current_version(), "versions": [_meta(m) for m in reversed(versions)]}
        )


class ConfigVersionApi(_ConfigBase):
    """``GET /api/config/versions/{n}``: one version's files and metadata."""

    async def get(self, number: str) -> None:
        mgr = self.manager()
        if not number.isdigit() or len(number) > 9:
            raise ApiError(404, f"no configuration version {number!r}")
        try:
            meta = await self.ctx.run_blocking(mgr.version, int(number))
        except KeyError as exc:
            raise ApiError(404, str(exc.args[0])) from None
        self.reply(_meta(meta))


class ConfigRollbackApi(_ConfigBase):
    """``POST /api/config/rollback``: apply an earlier version as a new one."""

    async def post(self) -> None:
        body = self.body(RollbackBody)
        mgr = self.manager()
        try:
            result = await mgr.rollback(self.user, body.version, source=self.source)
        except KeyError as exc:
            raise ApiError(404, str(exc.args[0])) from None
        except (ProposalError, ConfigUnavailable) as exc:
            raise ApiError(422, str(exc)) from None
        self.reply(result, 200 if result["valid"] else 422)
