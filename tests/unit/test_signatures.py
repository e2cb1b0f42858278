"""Each provider's signature, computed here as the provider would, is accepted; a forged
one, a missing one and a stale timestamp are refused."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from flovyn_server.engine.signatures import Refused, describe, lookup, verify

SECRET = "a-long-shared-secret"
BODY = b'{"type": "invoice.paid", "id": "evt_1", "event": {"type": "message"}}'
NOW = 1_800_000_000


def mac(message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(SECRET.encode(), message, getattr(hashlib, algorithm)).digest()


HMAC = {"type": "hmac", "secret": SECRET}
CASES = {
    "github": {"X-Hub-Signature-256": "sha256=" + mac(BODY).hex(), "X-GitHub-Event": "push"},
    "shopify": {"X-Shopify-Hmac-Sha256": base64.b64encode(mac(BODY)).decode()},
    "stripe": {"Stripe-Signature": f"t={NOW},v1=" + mac(f"{NOW}.".encode() + BODY).hex()},
    "slack": {
        "X-Slack-Signature": "v0=" + mac(f"v0:{NOW}:".encode() + BODY).hex(),
        "X-Slack-Request-Timestamp": str(NOW),
    },
    "generic": {"X-Signature": mac(BODY).hex()},
}


@pytest.mark.parametrize("provider", list(CASES))
def test_a_real_signature_passes_and_a_forged_one_does_not(provider: str) -> None:
    headers = CASES[provider]
    verify(provider, HMAC, headers, BODY, now=NOW)
    with pytest.raises(Refused):
        verify(provider, HMAC, headers, BODY + b" ", now=NOW)  # the body changed
    with pytest.raises(Refused):
        verify(provider, {**HMAC, "secret": "another-secret"}, headers, BODY, now=NOW)
    with pytest.raises(Refused, match="no "):
        verify(provider, HMAC, {}, BODY, now=NOW)


@pytest.mark.parametrize("provider", ["stripe", "slack"])
def test_a_stale_timestamp_is_refused(provider: str) -> None:
    verify(provider, HMAC, CASES[provider], BODY, now=NOW + 299)
    with pytest.raises(Refused, match="five minutes"):
        verify(provider, HMAC, CASES[provider], BODY, now=NOW + 301)


def test_generic_with_its_own_header_algorithm_encoding_and_prefix() -> None:
    scheme = {**HMAC, "headerName": "X-Hook-Sig", "algorithm": "sha512", "encoding": "base64",
              "prefix": "sig:"}  # fmt: skip
    signed = {"X-Hook-Sig": "sig:" + base64.b64encode(mac(BODY, "sha512")).decode()}
    verify("generic", scheme, signed, BODY)
    with pytest.raises(Refused):
        verify(
            "generic", scheme, {"X-Hook-Sig": base64.b64encode(mac(BODY, "sha512")).decode()}, BODY
        )
    verify("generic", {"type": "none"}, {}, BODY)  # nothing to check


def test_event_types_and_delivery_ids() -> None:
    payload = {
        "type": "invoice.paid",
        "id": "evt_1",
        "event": {"type": "message"},
        "event_id": "E1",
    }
    github = describe("github", {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"}, payload)
    assert (github.event_type, github.delivery_id) == ("push", "d-1")
    assert describe("stripe", {}, payload).event_type == "invoice.paid"
    assert describe("stripe", {}, payload).delivery_id == "evt_1"
    assert describe("slack", {}, payload).event_type == "message"
    assert (
        describe("shopify", {"X-Shopify-Topic": "orders/create"}, {}).event_type == "orders/create"
    )
    assert lookup({"a": {"b": [{"c": 3}]}}, "a.b.0.c") == 3
    assert lookup({"a": 1}, "a.b") is None
