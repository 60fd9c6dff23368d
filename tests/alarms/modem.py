"""A GSM modem emulator on the master side of a pseudo-terminal (for SMS notifier tests).

Speaks the text-mode subset real modems do: ``AT``, ``ATE0``/``ATE1`` (echo is on at
power-up, as on real modems), ``AT+CMGF=1``, ``AT+CSCS="GSM"|"UCS2"``, ``AT+CSMP=...``,
``AT+CMGS="<number>"`` -> ``> `` prompt, text until Ctrl-Z -> ``+CMGS: <ref>`` ``OK``;
Esc cancels. With ``pin`` set the SIM is locked: ``AT+CPIN?`` answers ``+CPIN: SIM PIN``,
``AT+CMGS`` ``+CME ERROR: 11`` until ``AT+CPIN="<pin>"`` (a wrong PIN: ``+CME ERROR: 16``);
without, ``AT+CPIN?`` answers ``+CPIN: READY``. Unknown commands answer ``ERROR``. Faults: ``fail_next`` answers the next
messages with ``+CMS ERROR: 38`` (network out of order); ``silent`` stops answering.
"""

from __future__ import annotations

import os
import select
import threading
import tty
from dataclasses import dataclass


@dataclass
class Sms:
    number: str
    text: str
    charset: str


class ModemEmulator:
    """Runs in a thread; ``port`` is the slave device path to open with pyserial."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.sent: list[Sms] = []
        self.commands: list[str] = []
        self.fail_next = 0
        self.silent = False
        self.echo = True
        self.charset = "GSM"
        self.pin: str | None = None
        self.unlocked = False
        self._text_mode = False
        self._pending_number: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modem-emulator", daemon=True)
        self._ref = 0
        self.received = threading.Condition()

    def start(self) -> ModemEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self.master)
        os.close(self.slave)

    def _write(self, data: bytes) -> None:
        if not self.silent:
            os.write(self.master, data)

    def _decode(self, text: str) -> str:
        if self.charset == "UCS2":
            return bytes.fromhex(text).decode("utf-16-be")
        return text

    def _run(self) -> None:
        buf = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                continue
            if self.echo and not self.silent:
                os.write(self.master, chunk)
            buf += chunk
            while True:
                if self._pending_number is not None:
                    for end in (b"\x1a", b"\x1b"):
                        if end in buf:
                            text, _, buf = buf.partition(end)
                            self._message(text.decode("ascii"), cancelled=end == b"\x1b")
                            break
                    else:
                        break
                    continue
                if b"\r" not in buf:
                    break
                line, _, buf = buf.partition(b"\r")
                self._command(line.decode("ascii", errors="replace").strip())

    def _message(self, text: str, *, cancelled: bool) -> None:
        number, self._pending_number = self._pending_number, None
        if cancelled:
            self._write(b"\r\nOK\r\n")
            return
        if self.fail_next:
            self.fail_next -= 1
            self._write(b"\r\n+CMS ERROR: 38\r\n")
            return
        assert number is not None
        self._ref += 1
        with self.received:
            self.sent.append(Sms(self._decode(number), self._decode(text), self.charset))
            self.received.notify_all()
        self._write(f"\r\n+CMGS: {self._ref}\r\n\r\nOK\r\n".encode())

    def _command(self, cmd: str) -> None:
        if not cmd:
            return
        self.commands.append(cmd)
        up = cmd.upper()
        ok = b"\r\nOK\r\n"
        if up in ("AT", "ATZ"):
            self._write(ok)
        elif up in ("ATE0", "ATE1"):
            self.echo = up == "ATE1"
            self._write(ok)
        elif up == "AT+CMGF=1":
            self._text_mode = True
            self._write(ok)
        elif up.startswith("AT+CSCS="):
            self.charset = cmd.split("=", 1)[1].strip('"').upper()
            self._write(ok)
        elif up.startswith("AT+CSMP="):
            self._write(ok)
        elif up == "AT+CPIN?":
            state = "SIM PIN" if self.pin and not self.unlocked else "READY"
            self._write(f"\r\n+CPIN: {state}\r\n\r\nOK\r\n".encode())
        elif up.startswith("AT+CPIN="):
            if self.pin is not None and cmd.split("=", 1)[1].strip('"') == self.pin:
                self.unlocked = True
                self._write(ok)
            else:
                self._write(b"\r\n+CME ERROR: 16\r\n")
        elif up.startswith("AT+CMGS=") and self.pin and not self.unlocked:
            self._write(b"\r\n+CME ERROR: 11\r\n")
        elif up.startswith("AT+CMGS=") and self._text_mode:
            self._pending_number = cmd.split("=", 1)[1].strip('"')
            self._write(b"\r\n> ")
        else:
            self._write(b"\r\nERROR\r\n")
