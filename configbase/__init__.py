"""What every package's config model builds on: the strict base model and id syntax
(``model``), ``${ENV}`` / ``${file:...}`` secrets (``secrets``) and pausing the garbage
collector while a large configuration is built (``bulk``).

The bottom of the house next to ``tags``: it imports only pydantic, so any package
(``historian``, ``alarms``, ``billing``, ``drivers``) may use it without importing ``scada``.
"""

__all__: list[str] = []
