"""Health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from scada.server.handlers.base import ApiHandler
from tags.model import Quality

__all__ = ["HealthApi", "MetricsApi", "OpenApiApi", "ReadyApi"]


class HealthApi(ApiHandler):
    """``GET /healthz``: the process answers (no authentication)."""

    def get(self) -> None:
        self.reply({"status": "ok"})


class ReadyApi(ApiHandler):
    """``GET /readyz``: 200 when the runtime's parts run, 503 listing what does not."""

    def get(self) -> None:
        services = self.ctx.services
        db, plant = services.db, services.plant
        checks: dict[str, bool] = {"tags": len(db) > 0}
        checks["historian"] = services.historian is not None
        if "historian.backend_ok" in db:
            v = db.read("historian.backend_ok")
            checks["historian_backend"] = not (v.quality is Quality.GOOD and v.value is False)
        if plant.role != "central" and plant.site.devices:  # a central's drivers are remote
            checks["drivers"] = plant.drivers is not None
        ok = all(checks.values())
        self.reply({"status": "ready" if ok else "not ready", "checks": checks}, 200 if ok else 503)


class MetricsApi(ApiHandler):
    """``GET /metrics``: Prometheus exposition (needs ``metrics.read``, e.g. a viewer token)."""

    def get(self) -> None:
        from scada.server.metrics import CONTENT_TYPE, render

        registry = self.ctx.registry
        assert registry is not None, "the server builds the registry before its routes"
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(render(registry))


class OpenApiApi(ApiHandler):
    """``GET /api/openapi.json``: the API description (public)."""

    def get(self) -> None:
        from scada.server.openapi import document

        self.reply(document())
