"""The services that are not HTTP: users and roles, audit, commands, alarm operations, config versions.

The runtime (:mod:`scada.runtime`) builds each of them once and hands them to the web server
(:mod:`scada.server`), the HMI (:mod:`hmi`) and billing; none of them knows about HTTP.

* :mod:`scada.services.auth`: roles, the one permission table (``may``), users' sessions and
  bearer tokens, login rate limiting; :mod:`scada.services.users` stores them.
* :mod:`scada.services.audit`: the append-only, hash-chained audit log.
* :mod:`scada.services.commands`: select-before-operate remote commands (the only write path
  for operators and billing), with :mod:`~scada.services.command_store` (restart-safe).
* :mod:`scada.services.alarm_ops`: audited alarm acknowledgement, shelving, out of service.
* :mod:`scada.services.config_versions`: config versions, validate, apply and roll back.
"""

__all__: list[str] = []
