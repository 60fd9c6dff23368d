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
from alarms.text import local_time_text
from hmi.session import HmiSession
from hmi.theme import (
    EQUIPMENT,
    PAGE_CSS,
    PAGE_FONT,
    PANEL,
    PANEL_EDGE,
    PRIORITY_COLOURS,
    PRIORITY_TEXT,
    TEXT,
    TEXT_DIM,
)
from hmi.timefmt import site_tz
from i18n import _, ngettext

__all__ = ["PRIORITY_CSS", "AlarmBanner", "banner_html", "priority_icon", "priority_name"]

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


#: Priority -> the SVG shape of its indicator (viewBox 0 0 24 24) and the number's baseline:
#: the shapes of the mimic's marks (``hmi.mimic_alarms.MARKERS``), so a priority looks the same
#: on every screen.
_SHAPES: dict[int, tuple[str, float]] = {
    1: ('<rect x="2" y="2" width="20" height="20"/>', 16.6),  # square
    2: ('<polygon points="12,0.8 23.2,12 12,23.2 0.8,12"/>', 16.6),  # diamond
    3: ('<polygon points="12,1.5 23,22.5 1,22.5"/>', 20.0),  # triangle
    4: ('<polygon points="1,1.5 23,1.5 12,22.5"/>', 12.6),  # inverted triangle
}


def priority_name(priority: int) -> str:
    """Return the priority's name in words (``critical``, ``high``, ``medium``, ``low``)."""
    names = {1: _("critical"), 2: _("high"), 3: _("medium"), 4: _("low")}
    return names.get(priority, str(priority))


def priority_icon(priority: int, unacked: bool = True, *, active: bool = True) -> str:
    """Return the priority indicator: its shape, its number and its colour (never colour alone).

    Unacknowledged: filled and blinking; acknowledged: outlined, steady; ``active=False``
    (nothing to count): grey. The SVG scales with the text (1.35 em).
    """
    shape, baseline = _SHAPES.get(priority, _SHAPES[4])
    colour = PRIORITY_COLOURS.get(priority, EQUIPMENT)
    if not active:
        fill, stroke, ink, cls = PANEL, EQUIPMENT, TEXT_DIM, "prio idle"
    elif unacked:
        fill, stroke, ink, cls = colour, colour, PRIORITY_TEXT.get(priority, TEXT), "prio unacked"
    else:
        fill, stroke, ink, cls = "#FFFFFF", colour, TEXT, "prio acked"
    return (
        f'<svg class="{cls}" viewBox="0 0 24 24" data-shape="{priority}" role="img" '
        f'aria-label="{html.escape(_("priority {n}", n=priority))}">'
        f'<g fill="{fill}" stroke="{stroke}" stroke-width="2.4">{shape}</g>'
        f'<text x="12" y="{baseline}" text-anchor="middle" font-size="15" font-weight="700" '
        f'fill="{ink}">{priority}</text></svg>'
    )


#: CSS of the priority indicators (banner, alarm list, cards).
PRIORITY_CSS = """
svg.prio { width: 1.35em; height: 1.35em; vertical-align: -0.3em; flex: none; overflow: visible; }
svg.prio.unacked { animation: prio-blink 1.2s steps(2, jump-none) infinite; }
@keyframes prio-blink { 50% { opacity: 0.35; } }
@media (prefers-reduced-motion: reduce) { svg.prio.unacked { animation: none; } }
"""


def _bubble(priority: int, active: int, unacked: int) -> str:
    name = priority_name(priority)
    title = ngettext(
        "{n} {name}-priority alarm active, {unacked} unacknowledged",
        "{n} {name}-priority alarms active, {unacked} unacknowledged",
        active,
        name=name,
        unacked=unacked,
    )
    cls = "bubble" + (" on" if active else "")
    icon = priority_icon(priority, unacked > 0, active=active > 0)
    return (
        f'<span class="{cls}" data-priority="{priority}" data-count="{active}" '
        f'data-unacked-n="{unacked}" title="{html.escape(title)}">{icon}'
        f"<span>{html.escape(_('{n} {name}', n=active, name=name))}</span></span>"
    )


def banner_html(alarms: list[Alarm], available: bool = True, *, tz: str = "UTC") -> str:
    """Return the banner's HTML for the annunciated ``alarms`` (newest first); times in ``tz``."""
    if not available:
        return (
            '<div class="banner" data-banner="none"><span class="denied">'
            f"{html.escape(_('no alarm engine'))}</span></div>"
        )
    counts = {p: [0, 0] for p in PRIORITY_COLOURS}  # priority -> [active, unacknowledged]
    newest = None
    for a in alarms:
        c = counts.setdefault(a.priority, [0, 0])
        c[0] += 1
        if a.unacked:
            c[1] += 1
            newest = newest or a
    unacked = sum(c[1] for c in counts.values())
    bubbles = "".join(_bubble(p, n, u) for p, (n, u) in sorted(counts.items()))
    if newest is not None:
        when = local_time_text(newest.raised_ts, tz)
        text = (
            f'<span class="newest" data-newest="{newest.occurrence}">'
            f'{priority_icon(newest.priority)}<span class="when">{html.escape(when)}</span>'
            f'<span class="msg">{html.escape(newest.message or newest.key)}</span></span>'
        )
    else:
        text = f'<span class="comm-ok">{html.escape(_("no unacknowledged alarms"))}</span>'
    return (
        f'<div class="banner" data-unacked="{unacked}" data-active="{len(alarms)}">'
        f'<a href="alarms" title="{html.escape(_("alarm list"))}">{bubbles}</a>'
        f'<span class="unacked">{html.escape(_("{n} unacknowledged", n=unacked))}</span> '
        f"{text}</div>"
    )


#: The font size of the page's text (``hmi.theme.PAGE_CSS``), for the banner's widgets.
BANNER_FONT = PAGE_FONT

BANNER_CSS = (
    PAGE_CSS
    + PRIORITY_CSS
    + f"""
.banner {{ display: flex; flex-wrap: wrap; gap: 0.3em 0.8em; align-items: center; font-size: 1.1em; }}
.banner a {{ text-decoration: none; color: inherit; display: flex; flex-wrap: wrap; gap: 0.3em 0.6em; }}
.banner .bubble {{ display: inline-flex; align-items: center; gap: 0.3em; white-space: nowrap;
                   padding: 0.05em 0.5em 0.05em 0.25em; border-radius: 0.9em; color: {TEXT_DIM};
                   border: 1px solid {PANEL_EDGE}; }}
.banner .bubble.on {{ color: {TEXT}; font-weight: 700; border-color: {EQUIPMENT}; background: #FFF; }}
.banner .unacked {{ font-weight: 600; white-space: nowrap; }}
.banner .newest {{ display: inline-flex; flex-wrap: wrap; align-items: center; gap: 0.1em 0.4em;
                   min-width: 0; }}
.banner .when {{ color: {TEXT_DIM}; font-variant-numeric: tabular-nums; white-space: nowrap; }}
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
            label=_("mute"),
            active=False,
            name="alarm-mute",
            button_type="light",
            styles={"min-width": "5em"},
        )
        self.mute.on_change("active", lambda _a, _o, new: self._label(new))
        # the chime: its text changes to the newest priority-1 occurrence, which rings in JS
        self.chime = Div(text="", name="alarm-chime", visible=False)
        self.chime.js_on_change("text", CustomJS(args={"mute": self.mute}, code=CHIME_JS))
        # the mute button's text follows the page font (read from 3 m on a wall)
        font = InlineStyleSheet(css=f":host {{ --bokeh-font-size: {BANNER_FONT}; }}")
        self.layout = row(
            self.div, self.mute, self.chime, sizing_mode="stretch_width", stylesheets=[font]
        )
        self._seen_p1: int | None = None
        self.refresh()
        session.on_alarm(self._on_events)

    def _label(self, muted: bool) -> None:
        self.mute.label = _("muted") if muted else _("mute")

    def refresh(self) -> None:
        """Redraw the banner from the engine's current alarm list."""
        if self.engine is None:
            self.div.text = banner_html([], available=False)
            return
        self.div.text = banner_html(self.engine.active(), tz=site_tz(self.session))

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
