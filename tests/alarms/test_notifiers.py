"""Each notifier against a real peer: tornado HTTP server, aiosmtpd SMTP server, a modem on a pty."""

from __future__ import annotations

import json
from email import message_from_bytes
from email.header import decode_header, make_header

import pytest
from aiosmtpd.controller import Controller
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler

from alarms.notifications import EmailNotifierConfig, SmsNotifierConfig, WebhookNotifierConfig
from alarms.notify.base import DeliveryError, Message
from alarms.notify.email import EmailNotifier
from alarms.notify.sms import SmsNotifier

from .modem import ModemEmulator

MSG = Message(
    "[P1] b1: котельная: авария насоса",
    "21.11 08:00 P1 b1 насос 2 авария [#7]",
    ({"key": "pump:b1.boiler.pump2", "occurrence": 7},),
    (7,),
)


# ----------------------------------------------------------------------------- webhook


class _Hook(RequestHandler):
    def initialize(self, received: list, codes: list) -> None:
        self.received = received
        self.codes = codes

    def post(self) -> None:
        self.received.append(
            (
                self.request.headers.get("Content-Type"),
                self.request.headers.get("X-Token"),
                json.loads(self.request.body),
            )
        )
        self.set_status(self.codes.pop(0) if self.codes else 200)


@pytest.fixture
async def hook_server():
    received: list = []
    codes: list = []
    sock, port = bind_unused_port()
    server = HTTPServer(Application([(r"/hook", _Hook, {"received": received, "codes": codes})]))
    server.add_sockets([sock])
    yield f"http://127.0.0.1:{port}/hook", received, codes
    server.stop()
    await server.close_all_connections()


async def test_webhook_posts_json(hook_server) -> None:
    from alarms.notify.webhook import WebhookNotifier

    url, received, codes = hook_server
    n = WebhookNotifier(
        WebhookNotifierConfig(name="hook", type="webhook", url=url, headers={"X-Token": "s3"})
    )
    await n.send("", MSG)
    ctype, token, body = received[0]
    assert ctype.startswith("application/json") and token == "s3"
    assert body == {
        "subject": MSG.subject,
        "text": MSG.body,
        "alarms": [{"key": "pump:b1.boiler.pump2", "occurrence": 7}],
    }
    codes.append(503)
    with pytest.raises(DeliveryError, match=r"hook.*503"):
        await n.send("", MSG)


async def test_webhook_connection_refused() -> None:
    from alarms.notify.webhook import WebhookNotifier

    sock, port = bind_unused_port()
    sock.close()  # nothing listens there now
    n = WebhookNotifier(
        WebhookNotifierConfig(
            name="hook", type="webhook", url=f"http://127.0.0.1:{port}/x", timeout_s=2
        )
    )
    with pytest.raises(DeliveryError, match=f"127.0.0.1:{port}"):
        await n.send("", MSG)


# ----------------------------------------------------------------------------- e-mail


class _Collect:
    def __init__(self) -> None:
        self.envelopes: list = []
        self.refuse = False

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse:
            return "550 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server():
    handler = _Collect()
    sock, port = bind_unused_port()
    sock.close()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


async def test_email_over_real_smtp(smtp_server) -> None:
    handler, port = smtp_server
    n = EmailNotifier(
        EmailNotifierConfig(
            name="mail", type="email", host="127.0.0.1", port=port, sender="scada@heat.example"
        )
    )
    await n.send("oncall@heat.example", MSG)
    env = handler.envelopes[0]
    assert env.mail_from == "scada@heat.example" and env.rcpt_tos == ["oncall@heat.example"]
    mail = message_from_bytes(env.original_content)
    assert str(make_header(decode_header(mail["Subject"]))) == MSG.subject
    assert mail.get_payload(decode=True).decode(mail.get_content_charset()).strip() == MSG.body
    handler.refuse = True
    with pytest.raises(DeliveryError, match=r"mail.*oncall@heat.example"):
        await n.send("oncall@heat.example", MSG)


# ----------------------------------------------------------------------------- SMS


@pytest.fixture
def modem():
    m = ModemEmulator().start()
    yield m
    m.stop()


def sms(modem, **kw) -> SmsNotifier:
    return SmsNotifier(
        SmsNotifierConfig(name="gsm", type="sms", port=modem.port, baudrate=115200, **kw)
    )


async def test_sms_text_mode_ascii(modem) -> None:
    n = sms(modem)
    await n.send("+79161234567", Message("[P2] b1: meter b1.m1 lost", "check RS-485 line"))
    assert [(s.number, s.text, s.charset) for s in modem.sent] == [
        ("+79161234567", "[P2] b1: meter b1.m1 lost\ncheck RS-485 line", "GSM")
    ]
    assert modem.commands[:3] == ["AT", "ATE0", "AT+CMGF=1"]


async def test_sms_unicode_as_ucs2_and_cut_to_one_message(modem) -> None:
    n = sms(modem)
    await n.send("+79161234567", MSG)
    s = modem.sent[0]
    assert s.charset == "UCS2" and s.number == "+79161234567"
    assert s.text.startswith("[P1] b1: котельная") and len(s.text) == 70 and s.text.endswith("…")
    assert "AT+CSMP=17,167,0,8" in modem.commands


async def test_sms_modem_error_and_silence(modem) -> None:
    n = sms(modem, timeout_s=0.5)
    modem.fail_next = 1
    with pytest.raises(DeliveryError, match=r"CMS ERROR: 38"):
        await n.send("+79161234567", Message("x", ""))
    modem.silent = True
    with pytest.raises(DeliveryError, match="no answer"):
        await n.send("+79161234567", Message("x", ""))
    modem.silent = False
    await n.send("+79161234567", Message("back", ""))  # the modem works again
    assert [s.text for s in modem.sent] == ["back"]


async def test_sms_bad_port() -> None:
    n = SmsNotifier(SmsNotifierConfig(name="gsm", type="sms", port="/dev/nonexistent-modem"))
    with pytest.raises(DeliveryError, match="nonexistent-modem"):
        await n.send("+79161234567", Message("x", ""))


# ----------------------------------------------------------------------------- secrets


def _auth(secret: str, seen: list):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password.decode() == secret
        seen.append((auth_data.login.decode(), ok))
        # handled=False: the server answers a refusal with 535 at once (aiosmtpd's default,
        # handled=True, sends nothing and the client waits out its 10 s timeout)
        return AuthResult(success=ok, handled=False)

    return authenticator


@pytest.fixture
def smtp_auth_server():
    handler, seen = _Collect(), []
    sock, port = bind_unused_port()
    sock.close()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=_auth("pa$$-from-env", seen),
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    yield handler, port, seen
    controller.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_email_logs_in_with_a_password_from_the_environment(
    smtp_auth_server, monkeypatch
) -> None:
    handler, port, seen = smtp_auth_server

    def mail() -> EmailNotifierConfig:
        return EmailNotifierConfig(
            name="mail",
            type="email",
            host="127.0.0.1",
            port=port,
            sender="scada@heat.example",
            username="scada",
            password="${SCADA_TEST_SMTP_PASSWORD}",
        )

    monkeypatch.setenv("SCADA_TEST_SMTP_PASSWORD", "pa$$-from-env")
    cfg = mail()
    assert "pa$$" not in repr(cfg) and "pa$$" not in cfg.model_dump_json()
    await EmailNotifier(cfg).send("oncall@heat.example", MSG)
    assert seen == [("scada", True)] and handler.envelopes[0].rcpt_tos == ["oncall@heat.example"]
    # a wrong password: the server refuses (535, not a timeout), nothing is delivered, the
    # error shows no password
    monkeypatch.setenv("SCADA_TEST_SMTP_PASSWORD", "wrong-one")
    with pytest.raises(DeliveryError, match=r"mail: .*\b535\b") as info:
        await EmailNotifier(mail()).send("oncall@heat.example", MSG)
    assert "wrong-one" not in str(info.value) and len(handler.envelopes) == 1
    assert seen[-1] == ("scada", False)


async def test_webhook_url_and_header_from_secrets_never_in_errors(
    hook_server, tmp_path, monkeypatch
) -> None:
    from alarms.notify.webhook import WebhookNotifier

    url, received, codes = hook_server
    token_file = tmp_path / "hook_token"
    token_file.write_text("t0k3n-in-a-file\n")  # docker secrets end with a newline
    monkeypatch.setenv("SCADA_TEST_HOOK_URL", url + "?key=url-secret")
    cfg = WebhookNotifierConfig(
        name="hook",
        type="webhook",
        url="${SCADA_TEST_HOOK_URL}",
        headers={"X-Token": f"${{file:{token_file}}}"},
    )
    n = WebhookNotifier(cfg)
    await n.send("", MSG)
    assert received[0][1] == "t0k3n-in-a-file"
    codes.append(500)
    with pytest.raises(
        DeliveryError, match=r"hook: POST http://127\.0\.0\.1:\d+/\.\.\. answered 500"
    ):
        await n.send("", MSG)
    for text in (repr(cfg), cfg.model_dump_json()):
        assert "url-secret" not in text and "t0k3n" not in text


async def test_sms_enters_the_sim_pin(modem, monkeypatch) -> None:
    modem.pin = "4711"
    monkeypatch.setenv("SCADA_TEST_PIN", "4711")
    await sms(modem, pin="${SCADA_TEST_PIN}").send("+79161234567", Message("pin ok", ""))
    assert [s.text for s in modem.sent] == ["pin ok"] and modem.unlocked
    assert modem.commands[:4] == ["AT", "ATE0", "AT+CPIN?", 'AT+CPIN="4711"']
    # a wrong PIN: the error names the step, never the PIN
    modem.unlocked = False
    monkeypatch.setenv("SCADA_TEST_PIN", "9999")
    with pytest.raises(DeliveryError, match=r"AT\+CPIN=<pin>.*CME ERROR: 16") as info:
        await sms(modem, pin="${SCADA_TEST_PIN}").send("+79161234567", Message("x", ""))
    assert "9999" not in str(info.value)
    with pytest.raises(ValueError, match="SIM PIN must be 4 to 8 digits"):
        SmsNotifierConfig(name="gsm", type="sms", port=modem.port, pin='12";AT+X')
