"""SMS notifier: a GSM modem on a serial port, driven with AT commands (pyserial).

Sequence per message (3GPP TS 27.005, text mode): ``AT`` -> ``OK``; ``ATE0`` (no echo);
with a configured ``pin``, ``AT+CPIN?`` and, if the answer is ``+CPIN: SIM PIN``,
``AT+CPIN="<pin>"`` (the PIN is a secret: errors never show it);
``AT+CMGF=1``; ``AT+CSCS="GSM"`` for plain ASCII texts, or ``AT+CSCS="UCS2"`` and
``AT+CSMP=17,167,0,8`` with number and text hex-encoded as UCS-2 for anything else
(Cyrillic, Chinese); ``AT+CMGS="<number>"`` -> the ``> `` prompt; the text and Ctrl-Z ->
``+CMGS: <ref>`` and ``OK``. ``ERROR``, ``+CMS ERROR: n`` or ``+CME ERROR: n`` at any step,
or no answer within ``timeout_s``, is a ``DeliveryError``. Texts longer than one SMS
(``max_chars``; 70 for UCS-2) are cut with an ellipsis.

The port is opened per message in a worker thread and one lock serialises messages, so
a modem that was unplugged works again when it comes back.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Protocol, cast

import serial

from alarms.notifications import SmsNotifierConfig
from alarms.notify.base import DeliveryError, Message

__all__ = ["ModemError", "SmsNotifier", "send_sms"]

log = logging.getLogger(__name__)

CTRL_Z = b"\x1a"
_FINAL_ERRORS = (b"ERROR", b"+CMS ERROR", b"+CME ERROR", b"NO CARRIER")
UCS2_MAX = 70


class ModemError(Exception):
    """The modem answered with an error or not at all."""


def _ucs2_hex(text: str) -> str:
    return text.encode("utf-16-be").hex().upper()


class _Port(Protocol):
    """What the modem dialogue uses of an open pyserial port."""

    timeout: float | None

    @property
    def in_waiting(self) -> int: ...
    def read(self, size: int, /) -> bytes: ...
    def write(self, data: bytes, /) -> int | None: ...
    def reset_input_buffer(self) -> None: ...


class _Modem:
    def __init__(self, port: _Port, timeout_s: float) -> None:
        self.port = port
        self.timeout_s = timeout_s

    def _read_until(self, final: bytes | None, what: str, *, show: bool = True) -> bytes:
        """Read until a line starting with ``final`` (None: the ``> `` prompt); return all read.

        A line reporting an error raises ``ModemError``; so does silence for ``timeout_s``
        (with what was read, unless ``show`` is false: the reply may echo a secret).
        """
        buf = b""
        deadline = time.monotonic() + self.timeout_s
        while True:
            for raw in buf.replace(b"\r", b"\n").split(b"\n"):
                line = raw.strip()
                if line.startswith(_FINAL_ERRORS):
                    raise ModemError(f"{what}: modem answered {line.decode(errors='replace')!r}")
                if final is not None and line.startswith(final):
                    return buf
            if final is None and buf.rstrip(b" ").endswith(b">"):
                return buf
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = f" (got {buf!r})" if show else ""
                raise ModemError(f"{what}: no answer within {self.timeout_s:g} s{got}")
            self.port.timeout = min(remaining, 0.2)
            buf += self.port.read(max(1, self.port.in_waiting))

    def command(self, cmd: str) -> bytes:
        self.port.write(cmd.encode("ascii") + b"\r")
        return self._read_until(b"OK", cmd)

    def unlock(self, pin: str) -> None:
        """Enter the SIM PIN if the modem asks for one (``+CPIN: SIM PIN``)."""
        reply = self.command("AT+CPIN?")
        if b"SIM PIN" not in reply.upper():
            return
        self.port.write(f'AT+CPIN="{pin}"\r'.encode("ascii"))
        self._read_until(b"OK", "AT+CPIN=<pin>", show=False)

    def send(self, number: str, text: str, max_chars: int, pin: str | None = None) -> str:
        self.port.reset_input_buffer()
        self.command("AT")
        self.command("ATE0")
        if pin:
            self.unlock(pin)
        self.command("AT+CMGF=1")
        if text.isascii():
            self.command('AT+CSCS="GSM"')
            body = (text if len(text) <= max_chars else text[: max_chars - 3] + "...").encode(
                "ascii"
            )
            dest = number
        else:
            self.command('AT+CSCS="UCS2"')
            self.command("AT+CSMP=17,167,0,8")
            limit = min(max_chars, UCS2_MAX)
            body = _ucs2_hex(text if len(text) <= limit else text[: limit - 1] + "…").encode(
                "ascii"
            )
            dest = _ucs2_hex(number)
        self.port.write(f'AT+CMGS="{dest}"\r'.encode("ascii"))
        self._read_until(None, "AT+CMGS")
        self.port.write(body + CTRL_Z)
        reply = self._read_until(b"OK", "message text")
        for line in reply.replace(b"\r", b"\n").split(b"\n"):
            if line.strip().startswith(b"+CMGS:"):
                return line.strip()[6:].strip().decode(errors="replace")
        raise ModemError(f"message text: OK without +CMGS reference (got {reply!r})")


def send_sms(
    port: str,
    baudrate: int,
    number: str,
    text: str,
    *,
    timeout_s: float = 15.0,
    max_chars: int = 160,
    pin: str | None = None,
) -> str:
    """Send one SMS through the modem on ``port`` (blocking); return the modem's message reference.

    ``pin`` is entered first if the SIM asks for it.

    Raises ``ModemError`` (modem error or silence) or ``serial.SerialException`` (port).
    """
    with serial.serial_for_url(
        port, baudrate=baudrate, timeout=0.2, write_timeout=timeout_s
    ) as ser:
        # typed as SerialBase, but every port class serial_for_url opens (serial.Serial,
        # the loop:// and socket:// handlers) has in_waiting and reset_input_buffer
        return _Modem(cast(_Port, ser), timeout_s).send(number, text, max_chars, pin)


class SmsNotifier:
    """Sends each message as one SMS (subject first, then the body) to a phone number."""

    kind = "sms"

    def __init__(self, config: SmsNotifierConfig) -> None:
        self.name = config.name
        self.config = config
        self._lock = threading.Lock()

    def _send_blocking(self, number: str, text: str) -> str:
        with self._lock:
            c = self.config
            return send_sms(
                c.port,
                c.baudrate,
                number,
                text,
                timeout_s=c.timeout_s,
                max_chars=c.max_chars,
                pin=c.pin.get_secret_value() if c.pin else None,
            )

    async def send(self, address: str, message: Message) -> None:
        """Send ``message`` to phone number ``address``; raise ``DeliveryError`` on any modem problem."""
        text = message.subject if not message.body else f"{message.subject}\n{message.body}"
        try:
            ref = await asyncio.to_thread(self._send_blocking, address, text)
        except (ModemError, serial.SerialException, OSError) as exc:
            raise DeliveryError(
                f"sms {self.name}: to {address} via {self.config.port}: {exc}"
            ) from exc
        log.debug("sms %s: delivered to %s (reference %s)", self.name, address, ref)

    async def close(self) -> None:
        """Nothing to release (the port is opened per message)."""
