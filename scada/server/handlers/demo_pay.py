"""The demo payment provider: a simulated provider page that pays through the real callback.

Served only for a provider configured with ``demo: true`` (``payments.providers``); any other
provider id is 404, so a production site without a demo provider has no such page.

``GET /demo-pay/{provider}?account=<id>`` (signed in; the account must be the user's to read,
a tenant's own): the merchant's order is made here (an order id and a token, the HMAC of
provider, account and order with the provider's secret, so the page only pays orders this
server made) and the "provider's" page asks for the amount. ``POST /demo-pay/{provider}`` (the
page's form; public, as a provider's page is): checks the token and the amount (400 naming the
field), then does what a real provider does: it sends the payment notice (transaction id
``demo-<order>``, the amount, the time) to ``POST /api/payments/callback/{provider}`` of this
server over HTTP, signed ``X-Signature: sha256=...`` with the same secret (``${ENV}`` in the
configuration), and shows the callback's answer: posted, or ``repeated`` when the same order
was sent before. *Send the callback again* re-sends that notice, as a provider retries: it
posts nothing more. Loop-thread only.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import time
import uuid
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from billing.errors import BadAmount, UnknownAccount
from billing.money import parse_amount
from billing.payments import SIGNATURE_HEADER, PaymentProvider, UnknownProvider, sign
from i18n import _
from scada.server.handlers.base import ApiError, ApiHandler
from scada.services.auth import Action
from tags.model import iso

__all__ = ["DemoPayPage", "order_token"]

#: Timeout of the callback this page sends to its own server.
CALLBACK_TIMEOUT_S = 30.0
_ORDER = frozenset("0123456789abcdef")

_STYLE = """<style>
body { font-family: system-ui, sans-serif; margin: 0; background: #eef3f8; color: #222; }
main { max-width: 28em; margin: 2em auto; background: #fff; padding: 1.5em; border-radius: 8px;
       box-shadow: 0 1px 4px #0002; }
.banner { background: #1f5fa8; color: #fff; padding: 0.6em 1em; font-weight: bold; }
label, input, button { display: block; font-size: 1.1em; margin: 0.4em 0; }
input { width: 100%; box-sizing: border-box; padding: 0.4em; }
button { padding: 0.5em 1.2em; }
.ok { color: #176b2c; } .bad { color: #a11; } .u { color: #5c5c5c; font-size: 0.9em; }
</style>"""


def order_token(secret: str, provider: str, account: str, order: str) -> str:
    """Return the token that binds an order to its provider and account (hex HMAC-SHA256)."""
    msg = f"demo-order\n{provider}\n{account}\n{order}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def _page(title: str, body: str) -> str:
    banner = html.escape(_("Demo payment provider: no real money is moved"))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>{_STYLE}</head><body>"
        f'<div class="banner">{banner}</div><main>{body}</main></body></html>'
    )


def _hidden(fields: dict[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )


class DemoPayPage(ApiHandler):
    """``/demo-pay/{provider}``: the simulated provider's page (module docstring)."""

    def _provider(self, provider: str) -> PaymentProvider:
        try:
            cfg = self.ctx.services.plant.site.payments.provider(provider)
        except UnknownProvider:
            cfg = None
        if cfg is None or not cfg.demo:
            raise ApiError(404, f"no demo payment provider {provider!r}")
        return cfg

    def _html(self, text: str, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(text)

    def get(self, provider: str) -> None:
        cfg = self._provider(provider)
        account = self.arg("account") or ""
        billing = self.ctx.services.billing
        if billing is None:
            raise ApiError(503, "billing is not running")
        try:
            scope = tuple(t for t in billing.account_scope(account) if t)
        except (KeyError, UnknownAccount):
            scope = ()
        if not scope or not self.may(Action.BILLING_READ, scope):
            raise ApiError(404, f"account: unknown account {account!r}")
        order = uuid.uuid4().hex
        token = order_token(cfg.secret.get_secret_value(), provider, account, order)
        title = _("Pay {provider}", provider=cfg.name or cfg.id)
        fields = _hidden({"account": account, "order": order, "token": token})
        body = (
            f"<h1>{html.escape(title)}</h1>"
            f"<p>{html.escape(_('Account {account}', account=account))}</p>"
            f'<form method="post" action="/demo-pay/{html.escape(provider)}" data-order="{order}">'
            f"{fields}<label for=amount>{html.escape(_('Amount ({currency})', currency=cfg.currency))}"
            '</label><input id="amount" name="amount" inputmode="decimal" value="50.00" required>'
            f'<button type="submit" id="confirm">{html.escape(_("Confirm payment"))}</button>'
            "</form>"
        )
        self._html(_page(title, body))

    async def post(self, provider: str) -> None:
        cfg = self._provider(provider)
        secret = cfg.secret.get_secret_value()
        account = self.get_body_argument("account", "")
        order = self.get_body_argument("order", "")
        token = self.get_body_argument("token", "")
        if not order or len(order) != 32 or not set(order) <= _ORDER:
            raise ApiError(400, "order: not an order of this page")
        expected = order_token(secret, provider, account, order)
        if not hmac.compare_digest(expected, token):
            raise ApiError(400, "token: the order was not made by this server for this account")
        text = self.get_body_argument("amount", "").strip()
        try:
            amount = parse_amount(text, "amount")
        except BadAmount as exc:
            raise ApiError(400, f"amount: {exc}") from None
        if amount <= 0:
            raise ApiError(400, f"amount: must be more than 0, got {text!r}")
        paid_at = self.get_body_argument("paid_at", "") or iso(time.time()) or ""
        notice = {
            "transaction_id": f"demo-{order}",
            "account": account,
            "amount": f"{amount:.2f}",
            "currency": cfg.currency,
            "paid_at": paid_at,
        }
        status, answer = await self._callback(provider, secret, notice)
        self._html(_page(_("Payment"), self._result(provider, notice, status, answer, token)))

    async def _callback(
        self, provider: str, secret: str, notice: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """Send the signed notice to this server's callback; return its status and JSON."""
        body = json.dumps(notice).encode()
        url = f"{self.request.protocol}://{self.request.host}/api/payments/callback/{provider}"
        request = HTTPRequest(
            url,
            method="POST",
            body=body,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body)},
            request_timeout=CALLBACK_TIMEOUT_S,
            validate_cert=not self.ctx.tls,  # its own (perhaps self-signed) certificate
        )
        try:
            reply = await AsyncHTTPClient().fetch(request)
            status, raw = reply.code, reply.body
        except HTTPClientError as exc:
            status = exc.code
            raw = exc.response.body if exc.response is not None else b"{}"
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            answer = {"error": raw.decode("utf-8", "replace")[:200]}
        return status, answer if isinstance(answer, dict) else {}

    def _result(
        self,
        provider: str,
        notice: dict[str, str],
        status: int,
        answer: dict[str, Any],
        token: str,
    ) -> str:
        order = notice["transaction_id"].removeprefix("demo-")
        if status == 200:
            repeated = bool(answer.get("repeated"))
            state = "repeated" if repeated else "posted"
            text = (
                _("This payment was confirmed before: nothing more was paid")
                if repeated
                else _(
                    "Paid {amount} {currency}", amount=notice["amount"], currency=notice["currency"]
                )
            )
            cls = "ok"
        else:
            state = "refused"
            text = _("Refused ({status}): {reason}", status=status, reason=answer.get("error", ""))
            cls = "bad"
        entry = answer.get("entry") or {}
        seq = entry.get("seq", "") if isinstance(entry, dict) else ""
        retry = _hidden(
            {
                "account": notice["account"],
                "order": order,
                "token": token,
                "amount": notice["amount"],
                "paid_at": notice["paid_at"],
            }
        )
        back = "/hmi/tenant"
        return (
            f'<h1 class="{cls}" data-demo-status="{state}" data-entry="{html.escape(str(seq))}">'
            f"{html.escape(text)}</h1>"
            f"<p>{html.escape(_('Account {account}', account=notice['account']))}</p>"
            f'<p><a href="{back}" id="back">{html.escape(_("Back to my account"))}</a></p>'
            f'<form method="post" action="/demo-pay/{html.escape(provider)}">{retry}'
            f'<button type="submit" id="resend">{html.escape(_("Send the callback again"))}'
            "</button></form>"
            f'<p class="u">{html.escape(_("(as a provider retries: it must post nothing more)"))}'
            "</p>"
            f'<p class="u">{html.escape(_("transaction {id}", id=notice["transaction_id"]))}</p>'
        )
