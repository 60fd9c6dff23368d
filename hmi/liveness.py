"""Never frozen-as-live: the server clock, the age of the page's data and the browser watchdog.

Every framed page (``hmi.layout.page_frame``) carries a :class:`LivenessStrip` at the right
of its navigation: the server's time in the site's zone (``15:09:41 CST``, the IANA name in
the tooltip) and "data 2 s old", the age of the newest good tag value the page applied
(``HmiSession.newest_data_ts``; a page without a tag feed shows the clock only). Data older
than :func:`stale_limit_s` is drawn in the "uncertain" style.

The strip is also the heartbeat: once a second the server sets the Div's ``tags`` to
``[server_ms, newest_data_ms, clock_text]``; a CustomJS hands them to ``window.hmiBeat``
(the watchdog, :func:`watchdog_script`, in every framed page's ``<head>``). The watchdog:

* shows a full-screen overlay (content greyed, banner "Connection to the server lost at
  HH:MM:SS — the values shown are N s old — reconnecting…", the age ticking in the browser)
  when Bokeh's websocket closes (``connection_lost``) or no beat came for 2.5 s;
* while lost, asks the server for ``/api/me`` every 2 s (cheap: no Bokeh session is
  built); when it answers, reloads the page
  (same URL and query string: a new Bokeh session; a restarted server no longer accepts the
  old session's signed token); when the answer is the login page (the login session is no
  longer valid), goes to ``/login?next=<this page>``;
* hides the overlay again when beats resume without a reload (a brief stall).

Threading: loop-thread only, like :class:`~hmi.session.HmiSession`.
"""

from __future__ import annotations

import html
import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from bokeh.document import Document
from bokeh.models import CustomJS, InlineStyleSheet
from bokeh.models.widgets import Div

from hmi.session import HmiSession
from hmi.theme import PAGE_CSS, TEXT_DIM
from i18n import _
from scada.services.auth import login_url
from tags.database import TagDatabase

__all__ = [
    "BEAT_S",
    "LivenessStrip",
    "age_text",
    "clock_text",
    "stale_limit_s",
    "watchdog_script",
]

#: Period of the server heartbeat (and of the clock's update).
BEAT_S = 1.0
#: Data older than this is stale whatever the poll periods.
MAX_FRESH_S = 60.0

_STRIP_CSS = f"""
.hmi-live {{ display: flex; gap: 0.8em; align-items: center; white-space: nowrap; font-size: 1.05em; }}
.hmi-live .clock {{ font-variant-numeric: tabular-nums; font-weight: 600; }}
.hmi-live .age {{ color: {TEXT_DIM}; font-variant-numeric: tabular-nums; padding: 0 0.3em; }}
"""


def clock_text(ts: float, tz: str) -> str:
    """Return epoch seconds ``ts`` as ``HH:MM:SS ZONE`` in time zone ``tz`` (``15:09:41 CST``)."""
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%H:%M:%S %Z")


def age_text(age_s: float) -> str:
    """Return a data age for the strip: ``data 2 s old``, ``data 5 min old``, ``data 3 h old``."""
    age = max(0, int(age_s))
    if age < 120:
        return _("data {age} s old", age=age)
    if age < 2 * 3600:
        return _("data {age} min old", age=age // 60)
    return _("data {age} h old", age=age // 3600)


def stale_limit_s(db: TagDatabase) -> float:
    """Return the data age beyond which a page's data counts as stale.

    Twice the slowest poll period of the site's tags, at most :data:`MAX_FRESH_S`
    (:data:`MAX_FRESH_S` when no tag is polled).
    """
    polls = [d.poll_s for d in db.definitions() if d.poll_s]
    return min(2.0 * max(polls), MAX_FRESH_S) if polls else MAX_FRESH_S


def _browser_texts() -> dict[str, str]:
    """Return the watchdog's texts in the current language (``{time}``/``{age}`` filled in JS)."""
    return {
        "lost": _(
            "Connection to the server lost at {time} — the values shown are {age} s old"
            " — reconnecting…"
        ),
        "reloading": _("The server answers again — reloading the page…"),
        "login": _("Your login has ended — going to the login page…"),
        "loginUrl": login_url,
        "probeUrl": "/api/me",
    }


def watchdog_script() -> str:
    """Return the ``<script>`` of the browser watchdog (module docstring), texts translated."""
    texts = json.dumps(_browser_texts(), ensure_ascii=False).replace("</", "<\\/")
    return "<script>\n" + _WATCHDOG_JS.replace("__TEXTS__", texts) + "</script>"


class LivenessStrip:
    """The clock and data-age strip of one page, and the heartbeat of its session."""

    def __init__(self, session: HmiSession, doc: Document) -> None:
        self.session = session
        self.tz = session.services.site.site.timezone
        self.stale_after_s = stale_limit_s(session.services.db)
        self.div = Div(
            text=self._html(time.time(), session.newest_data_ts),
            name="liveness",
            stylesheets=[InlineStyleSheet(css=PAGE_CSS + _STRIP_CSS)],
        )
        self.div.js_on_change("tags", CustomJS(code=_ON_BEAT_JS))
        doc.template_variables["hmi_head"] = watchdog_script()
        # The watchdog reloads instead: a restarted server refuses the old session's token,
        # so Bokeh's own retries only log errors there; its toast is replaced by the overlay.
        doc.config.reconnect_session = False
        doc.config.notify_connection_status = False
        doc.js_on_event("connection_lost", CustomJS(code=_ON_LOST_JS))
        doc.js_on_event("client_reconnected", CustomJS(code=_ON_RECONNECTED_JS))
        session.periodic(self.beat, BEAT_S)

    def beat(self) -> None:
        """Push the server time and the data age to the browser (once per :data:`BEAT_S`)."""
        now = time.time()
        newest = self.session.newest_data_ts
        doc = self.session.doc
        doc.hold("combine")
        try:
            self.div.text = self._html(now, newest)
            self.div.tags = [
                round(now * 1000),
                None if newest is None else round(newest * 1000),
                clock_text(now, self.tz),
            ]
        finally:
            doc.unhold()

    def _html(self, now: float, newest: float | None) -> str:
        title = html.escape(_("server time, {zone}", zone=self.tz))
        clock = (
            f'<span class="clock" data-clock="1" title="{title}">{clock_text(now, self.tz)}</span>'
        )
        return f'<div class="hmi-live" data-live="1">{clock}{self._age_html(now, newest)}</div>'

    def _age_html(self, now: float, newest: float | None) -> str:
        if not self.session.has_feed:
            return ""
        if newest is None:
            title = html.escape(_("no good value received yet"))
            text = html.escape(_("no data yet"))
            return f'<span class="age q-uncertain" data-age="none" title="{title}">{text}</span>'
        age = max(0.0, now - newest)
        stale = age > self.stale_after_s
        cls = "age q-uncertain" if stale else "age"
        title = html.escape(
            _("the newest value is older than {limit} s", limit=round(self.stale_after_s))
            if stale
            else _("age of the newest value on this page")
        )
        return (
            f'<span class="{cls}" data-age="{int(age)}" data-stale="{int(stale)}" '
            f'title="{title}">{age_text(age)}</span>'
        )


_ON_BEAT_JS = "if (window.hmiBeat) window.hmiBeat(cb_obj.tags);"
_ON_LOST_JS = "if (window.hmiConnection) window.hmiConnection(false);"
_ON_RECONNECTED_JS = "if (window.hmiConnection) window.hmiConnection(true);"

# The watchdog. Armed by the first beat; every 500 ms: lost when the websocket closed or no
# beat came for 2.5 s. Times of the server come with the beats, so the "N s old" of the
# banner is measured on the server's clock (offset learnt at each beat), not the browser's.
_WATCHDOG_JS = r"""(function () {
  "use strict";
  var T = __TEXTS__;
  var LOST_AFTER_MS = 2500, CHECK_MS = 500, POLL_MS = 2000, SILENT_RELOAD_MS = 10000;
  var st = {armed: false, beatAt: 0, serverMs: 0, offsetMs: 0, newestMs: null, clock: "",
            socketLost: false, lost: false, lostClock: "", polling: false, polledAt: 0,
            reloading: false, leaving: false, el: null, text: null};
  window.hmiLastBeat = 0;
  addEventListener("beforeunload", function () { st.leaving = true; });

  window.hmiBeat = function (tags) {
    if (!tags || tags.length < 3) return;
    var now = Date.now();
    st.armed = true; st.beatAt = now; window.hmiLastBeat = now;
    st.serverMs = tags[0]; st.offsetMs = tags[0] - now; st.newestMs = tags[1]; st.clock = tags[2];
    if (st.lost && !st.socketLost) hide();
  };
  window.hmiConnection = function (up) {
    st.socketLost = !up;
    if (!up) { st.armed = true; check(); }
  };

  function overlay() {
    if (st.el) return st.el;
    var el = document.createElement("div");
    el.id = "hmi-lost"; el.setAttribute("role", "alert"); el.setAttribute("aria-live", "assertive");
    el.setAttribute("data-lost", "1");
    var banner = document.createElement("div"); banner.className = "hmi-lost-banner";
    var icon = document.createElement("span"); icon.className = "hmi-lost-icon"; icon.textContent = "\u2715";
    st.text = document.createElement("span"); st.text.className = "hmi-lost-text";
    banner.appendChild(icon); banner.appendChild(st.text); el.appendChild(banner);
    document.body.appendChild(el);
    st.el = el;
    return el;
  }
  function ageS() {
    var shown = st.newestMs != null ? st.newestMs : st.serverMs;
    return Math.max(0, Math.round((Date.now() + st.offsetMs - shown) / 1000));
  }
  function show() {
    if (!st.lost) { st.lost = true; st.lostClock = st.clock; }
    var el = overlay();
    el.hidden = false;
    document.documentElement.classList.add("hmi-offline");
    if (!st.reloading) st.text.textContent = T.lost.replace("{time}", st.lostClock).replace("{age}", ageS());
  }
  function hide() {
    st.lost = false;
    if (st.el) st.el.hidden = true;
    document.documentElement.classList.remove("hmi-offline");
  }
  function leave(url, text) {
    st.reloading = true; st.text.textContent = text;
    if (url) location.assign(url); else location.reload();
  }
  function poll() {
    if (st.polling || st.reloading) return;
    st.polling = true; st.polledAt = Date.now();
    // a cheap probe (not the page itself: fetching the page would build a whole Bokeh
    // session on the server at every poll, which a loaded server cannot afford)
    fetch(T.probeUrl, {cache: "no-store", credentials: "same-origin"}).then(function (r) {
      if (r.body) r.body.cancel();
      if (r.status === 401 || new URL(r.url, location.href).pathname === T.loginUrl) {
        var next = location.pathname + location.search;
        leave(T.loginUrl + "?next=" + encodeURIComponent(next), T.login);
      } else if (r.status < 500 && (st.socketLost || Date.now() - st.beatAt > SILENT_RELOAD_MS)) {
        leave(null, T.reloading);
      }
    }).catch(function () { /* still down: try again */ }).then(function () { st.polling = false; });
  }
  function check() {
    if (!st.armed || st.leaving) return;
    if (st.socketLost || Date.now() - st.beatAt > LOST_AFTER_MS) {
      show();
      if (Date.now() - st.polledAt >= POLL_MS) poll();
    } else if (st.lost) {
      hide();
    }
  }
  setInterval(check, CHECK_MS);
})();
"""
