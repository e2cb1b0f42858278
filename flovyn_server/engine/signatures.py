"""Verifying a webhook delivery by its provider's scheme, before anything is stored.

Every scheme is an HMAC of the raw body (stripe and slack prefix a timestamp, which
must be within five minutes of now), compared in constant time. Each provider also
says where its event type and its delivery id are.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TOLERANCE_S = 300  # stripe's and slack's timestamp tolerance

# provider -> (header, encoding, prefix, event type header, delivery id header)
DEFAULTS: dict[str, tuple[str, str, str, str | None, str | None]] = {
    "github": ("X-Hub-Signature-256", "hex", "sha256=", "X-GitHub-Event", "X-GitHub-Delivery"),
    "stripe": ("Stripe-Signature", "hex", "", None, None),
    "shopify": ("X-Shopify-Hmac-Sha256", "base64", "", "X-Shopify-Topic", "X-Shopify-Webhook-Id"),
    "slack": ("X-Slack-Signature", "hex", "v0=", None, None),
    "generic": ("X-Signature", "hex", "", "X-Event-Type", "X-Delivery-Id"),
}


class Refused(Exception):
    """The delivery is not signed as the webhook says it must be (401)."""


@dataclass(frozen=True)
class Delivery:
    event_type: str
    delivery_id: str | None


def _digest(algorithm: str, secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, getattr(hashlib, algorithm)).digest()


def _encode(raw: bytes, encoding: str) -> str:
    return base64.b64encode(raw).decode() if encoding == "base64" else raw.hex()


def _fresh(timestamp: str | None, now: float) -> int:
    try:
        stamp = int(timestamp or "")
    except ValueError:
        raise Refused("no valid signature timestamp") from None
    if abs(now - stamp) > TOLERANCE_S:
        raise Refused("the signature's timestamp is more than five minutes away")
    return stamp


def verify(
    provider: str,
    verification: Mapping[str, Any],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
) -> None:
    """Refused unless `body` carries a valid signature for the webhook."""
    if verification.get("type") != "hmac":
        return
    now = time.time() if now is None else now
    header, encoding, prefix, _, _ = DEFAULTS[provider]
    header = verification.get("headerName") or header
    encoding = verification.get("encoding") or encoding
    given_prefix = verification.get("prefix")
    prefix = prefix if given_prefix is None else str(given_prefix)
    secret, algorithm = verification["secret"], verification.get("algorithm") or "sha256"
    given = headers.get(header)
    if not given:
        raise Refused(f"no {header} header")
    if provider == "stripe":
        parts = [p.partition("=") for p in given.split(",")]
        stamp = _fresh(next((v for k, _, v in parts if k.strip() == "t"), None), now)
        expected = _encode(_digest(algorithm, secret, f"{stamp}.".encode() + body), encoding)
        candidates = [v for k, _, v in parts if k.strip() == "v1"]
    elif provider == "slack":
        stamp = _fresh(headers.get("X-Slack-Request-Timestamp"), now)
        expected = prefix + _encode(
            _digest(algorithm, secret, f"v0:{stamp}:".encode() + body), encoding
        )
        candidates = [given]
    else:
        expected = prefix + _encode(_digest(algorithm, secret, body), encoding)
        candidates = [given]
    if not any(hmac.compare_digest(expected.encode(), c.strip().encode()) for c in candidates):
        raise Refused("the signature does not match")


def describe(provider: str, headers: Mapping[str, str], payload: Any) -> Delivery:
    """The delivery's event type and id, where the provider puts them."""
    _, _, _, type_header, id_header = DEFAULTS[provider]
    body = payload if isinstance(payload, dict) else {}
    if provider in ("stripe", "slack"):
        event = body.get("event") if provider == "slack" else None
        kind = (event.get("type") if isinstance(event, dict) else None) or body.get("type")
        ident = body.get("event_id") if provider == "slack" else body.get("id")
        return Delivery(str(kind or ""), None if ident is None else str(ident))
    kind = headers.get(type_header or "") or (body.get("type") if provider == "generic" else None)
    ident = headers.get(id_header or "")
    return Delivery(str(kind or ""), ident or None)


def lookup(payload: Any, path: str) -> Any:
    """`a.b.0.c` in a JSON value; None where it does not lead."""
    value = payload
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value
