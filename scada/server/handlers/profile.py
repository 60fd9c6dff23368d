"""The signed-in user's own language: ``GET``/``PUT /api/me/language`` and its form.

A user's language (``en``, ``zh_CN``, ``ru``, or none: the site's ``site.language``) is
stored with the user (:meth:`~scada.services.users.UserStore.set_language`). The HMI reads
it when it builds a page, so a change shows on the next page load, without a restart. The
form is part of the ``/password`` page (:class:`~scada.server.handlers.session.PasswordPage`).
"""

from __future__ import annotations

import html
import json

from pydantic import BaseModel, ConfigDict, Field

from i18n import LANGUAGES, _
from scada.server.handlers.base import ApiError, ApiHandler
from scada.services.auth import XSRF_COOKIE, XSRF_HEADER
from scada.services.users import UserError

__all__ = ["LANGUAGE_NAMES", "LanguageApi", "LanguageBody", "language_form"]

#: Each language in its own words (what a reader of that language looks for).
LANGUAGE_NAMES = {"en": "English", "zh_CN": "中文（简体）", "ru": "Русский"}


class LanguageBody(BaseModel):
    """``PUT /api/me/language``: a supported language, or null for the site's default."""

    model_config = ConfigDict(extra="forbid", strict=True)

    language: str | None = Field(
        description="en, zh_CN or ru; null: follow the site's default language",
        # documented as the choices; checked by the handler (422 in the caller's language)
        json_schema_extra={"enum": [*LANGUAGES, None]},
    )


class LanguageApi(ApiHandler):
    """``GET``/``PUT /api/me/language``: the caller's language (any role). ``PUT`` is audited."""

    def _state(self) -> dict[str, object]:
        assert self.user is not None
        chosen = self.ctx.users.language_of(self.user.name)
        return {
            "language": chosen,
            "effective": chosen or self.site_language,
            "site": self.site_language,
            "available": list(LANGUAGES),
        }

    def get(self) -> None:
        self.reply(self._state())

    def put(self) -> None:
        body = self.body(LanguageBody)
        assert self.user is not None
        before = self.ctx.users.language_of(self.user.name)
        if body.language is not None and body.language not in LANGUAGES:
            raise ApiError(
                422,
                _(
                    "language: unknown language {language}: use one of {known}",
                    language=repr(body.language),
                    known=", ".join(LANGUAGES),
                ),
            )
        try:
            self.ctx.users.set_language(self.user.name, body.language)
        except UserError as exc:
            raise ApiError(422, str(exc)) from None
        self.ctx.audit.record(
            "user.language",
            user=self.user,
            source=self.source,
            target=self.user.name,
            before={"language": before},
            after={"language": body.language},
        )
        self.reply(self._state())


_FORM = """<form id="lang" style="max-width:22rem;margin:-8vh auto 4vh;background:#f4f4f4;
padding:1.5rem;border:1px solid #bbb;border-radius:4px">
<h2 style="font-size:1.1rem">{title}</h2>
<label for="language">{label}</label>
<select id="language" name="language" style="width:100%;padding:.5rem;font-size:1rem">{options}</select>
<button type="submit">{button}</button><div id="lang-msg" role="status"></div>
</form>
<script>
document.getElementById("lang").addEventListener("submit", async (ev) => {{
  ev.preventDefault();
  const value = document.getElementById("language").value;
  const xsrf = (document.cookie.match(/(?:^|; ){xsrf_cookie}=([^;]*)/) || [])[1] || "";
  const r = await fetch("/api/me/language", {{method: "PUT",
      headers: {{"Content-Type": "application/json", "{xsrf_header}": xsrf}},
      body: JSON.stringify({{language: value || null}}), credentials: "same-origin"}});
  let text = r.statusText;
  try {{ const j = await r.json(); text = r.ok ? {saved} : j.error; }} catch (e) {{}}
  document.getElementById("lang-msg").textContent = text;
  if (r.ok) window.location.reload();
}});
</script>"""


def language_form(chosen: str | None, site_language: str) -> str:
    """Return the HTML form that sets the user's language (``chosen``: None for the site's)."""
    site_name = LANGUAGE_NAMES.get(site_language, site_language)
    options = [("", _("site default ({language})", language=site_name))]
    options += [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES]
    option_html = "".join(
        f'<option value="{code}"{" selected" if code == (chosen or "") else ""}>'
        f"{html.escape(label)}</option>"
        for code, label in options
    )
    return _FORM.format(
        title=html.escape(_("Language")),
        label=html.escape(_("Language of screens and messages")),
        options=option_html,
        button=html.escape(_("Save language")),
        saved=json.dumps(_("saved: the next page you open uses it")),
        xsrf_cookie=XSRF_COOKIE,
        xsrf_header=XSRF_HEADER,
    )
