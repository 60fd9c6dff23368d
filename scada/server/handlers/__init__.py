"""REST handlers of the server, one module per resource (thin: parse, call a service, reply)."""

__all__ = ["admin", "alarms", "base", "commands", "config", "session", "system", "tags"]
