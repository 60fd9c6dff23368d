"""Bokeh's auth provider over our :class:`~scada.services.auth.Auth`: no HMI page without a login.

Used where Bokeh serves the HMI (:mod:`scada.server.http`, :mod:`scada.server.hmi_only`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bokeh.server.auth_provider import AuthProvider

from scada.services.auth import Auth, User, login_url

__all__ = ["BokehAuth"]


class BokehAuth(AuthProvider):
    """Bokeh's auth provider: no HMI page without a session (redirects to ``/login``)."""

    def __init__(self, auth: Auth) -> None:
        self._auth = auth
        super().__init__()

    @property
    # Bokeh types the user as its own NewType over object; ours is the signed-in User
    def get_user(self) -> Callable[[Any], User | None]:  # type: ignore[override]
        return self._auth.get_user

    @property
    def get_user_async(self) -> None:
        return None

    @property
    def login_url(self) -> str:
        return login_url

    @property
    def get_login_url(self) -> None:
        return None

    @property
    def login_handler(self) -> None:
        return None  # our /login page is in the route table

    @property
    def logout_url(self) -> str:
        return "/logout"

    @property
    def logout_handler(self) -> None:
        return None
