"""The alarm banner on every page: counts by priority, the newest unacknowledged alarm, a chime.

The banner reads the alarm engine (``services.alarms``) and follows its events. A new
priority-1 alarm rings an audible cue in the browser (Web Audio, no sound file) unless the
operator muted it with the banner's toggle; each cue also increments ``window.hmiChimes``
so tests and kiosk monitors can see it happened. Without an alarm engine the banner says so.
"""

from __future__ import annotations

import html

from bokeh.layouts import row
from bokeh.models import CustomJS, InlineStyleSheet
from bokeh.models.widgets import Div, Toggle

from alarms.model import Alarm, AlarmEvent
from hmi.session import HmiSession
from hmi.theme import PAGE_CSS, PRIORITY_COLOURS, PRIORITY_NAMES
from tags.model import iso

__all__ = ["AlarmBanner", "banner_html"]

CHIME_JS = """
if (mute.active) { return; }
window.hmiChimes = (window.hmiChimes || 0) + 1;
try {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) { return; }
  const ctx = window.hmiAudio || (window.hmiAudio = new Ctx());
  const t = ctx.currentTime;
  for (let i = 0; i < 3; i++) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.15, t + i * 0.35);
    gain.gain.setValueAtTime(0.0, t + i * 0.35 + 0.2);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t + i * 0.35);
    osc.stop(t + i * 0.35 + 0.22);
  }
} catch (err) { /* no audio device: the banner still shows the alarm */ }
"""


def banner_html(alarms: list[Alarm], available: bool = True) -> str:
    """Return the banner's HTML for the annunciated ``alarms`` (newest first)."""
    if not available:
        return '<div class="banner" data-banner="none"><span class="denied">no alarm engine</span></div>'
    counts = {p: 0 for p in PRIORITY_COLOURS}
    unacked = 0
    newest = None
    for a in alarms:
        counts[a.priority] = counts.get(a.priority, 0) + 1
        if a.unacked:
            unacked += 1
            if newest is None:
                newest = a
    pills = []
    for p, n in counts.items():
        cls = f"pill p{p}" if n else "pill"
        pills.append(
            f'<span class="{cls}" data-priority="{p}" data-count="{n}" '
            f'title="{PRIORITY_NAMES.get(p, p)}">{n}</span>'
        )
    if newest is not None:
        when = (iso(newest.raised_ts) or "")[11:19]
        text = (
            f'<span class="pill p{newest.priority}">P{newest.priority}</span>'
            f'<span data-newest="{newest.occurrence}">{html.escape(when)} '
            f"{html.escape(newest.message or newest.key)}</span>"
        )
    else:
        text = '<span class="comm-ok">no unacknowledged alarms</span>'
    return (
        f'<div class="banner" data-unacked="{unacked}" data-active="{len(alarms)}">'
        f'<a href="alarms" title="alarm list">{"".join(pills)}</a>'
        f'<span class="unacked">{unacked} unacked</span> {text}</div>'
    )


BANNER_CSS = (
    PAGE_CSS
    + """
.banner { display: flex; flex-wrap: wrap; gap: 0.3em 0.8em; align-items: center; font-size: 1.1em;
          white-space: nowrap; overflow: hidden; }
.banner a { text-decoration: none; }
.banner .unacked { font-weight: 600; }
"""
)


class AlarmBanner:
    """The banner of one session: ``layout`` goes at the top of the page."""

    def __init__(self, session: HmiSession) -> None:
        self.session = session
        self.engine = session.services.alarms
        style = InlineStyleSheet(css=BANNER_CSS)
        self.div = Div(
            text="", name="alarm-banner", stylesheets=[style], sizing_mode="stretch_width"
        )
        self.mute = Toggle(
            label="mute", active=False, name="alarm-mute", width=80, button_type="light"
        )
        self.mute.on_change("active", lambda _a, _o, new: self._label(new))
        # the chime: its text changes to the newest priority-1 occurrence, which rings in JS
        self.chime = Div(text="", name="alarm-chime", visible=False)
        self.chime.js_on_change("text", CustomJS(args={"mute": self.mute}, code=CHIME_JS))
        self.layout = row(self.div, self.mute, self.chime, sizing_mode="stretch_width")
        self._seen_p1: int | None = None
        self.refresh()
        session.on_alarm(self._on_events)

    def _label(self, muted: bool) -> None:
        self.mute.label = "muted" if muted else "mute"

    def refresh(self) -> None:
        """Redraw the banner from the engine's current alarm list."""
        if self.engine is None:
            self.div.text = banner_html([], available=False)
            return
        self.div.text = banner_html(self.engine.active())

    def _on_events(self, events: list[AlarmEvent]) -> None:
        self.refresh()
        for event in events:
            a = event.alarm
            if (
                event.kind.value == "raised"
                and a.priority == 1
                and a.occurrence is not None
                and a.occurrence != self._seen_p1
            ):
                self._seen_p1 = a.occurrence
                self.chime.text = str(a.occurrence)
