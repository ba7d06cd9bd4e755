"""/v1/webhook_endpoints and /v1/events: a merchant's endpoints, its events and their deliveries."""
import urllib.parse

from flask import Blueprint

from gateway.core import webhooks
from gateway.core.errors import Invalid
from gateway.http import api, webhook_targets
from gateway.http.auth import current_caller, requires
from gateway.http.idempotency import idempotent
from gateway.http.runtime import runtime

bp = Blueprint("webhooks", __name__)


@bp.post("/v1/webhook_endpoints")
@requires("merchant")
def create_endpoint():
    """Answers once with the endpoint's signing secret ("whsec_..."); lists never show it.
    The URL must reach the public internet (gateway.http.webhook_targets): checked, with its
    name lookup, before the write, which must not wait on DNS."""
    body = api.json_body(required=("url",), optional=("event_types",))
    return _create_endpoint(_target(body["url"]), body.get("event_types"))


@idempotent
def _create_endpoint(tx, url: str, event_types):
    rt = runtime()
    return 201, webhooks.create_endpoint(tx, merchant_id=current_caller().merchant_id, url=url,
                                         event_types=event_types, now=rt.now(), seal_key=rt.secret(webhooks.SEAL),
                                         max_endpoints=rt.config.max_webhook_endpoints)


@bp.post("/v1/webhook_endpoints/<endpoint_id>/roll_secret")
@requires("merchant")
@idempotent
def roll_secret(tx, endpoint_id):
    """{"expires_in": seconds}: a new signing secret, answered once; the old one signs beside it
    (a v1= value each in Tapstack-Signature) for expires_in seconds, 24 h unless given, 0 to 7 days."""
    body = api.json_body(optional=("expires_in",))
    expires_in = api.integer(body, "expires_in", low=0, high=webhooks.MAX_ROLL_SECONDS, optional=True)
    rt = runtime()
    return 200, webhooks.roll_secret(
        tx, merchant_id=current_caller().merchant_id, endpoint_id=endpoint_id, now=rt.now(),
        seal_key=rt.secret(webhooks.SEAL),
        expires_in=webhooks.DEFAULT_ROLL_SECONDS if expires_in is None else expires_in)


def _target(url) -> str:
    """The URL, if the gateway may POST to it: http(s), a port, and a public host (unless the
    operator allows private ones)."""
    parts = urllib.parse.urlsplit(webhooks.check_url(url))
    try:
        port = parts.port if parts.port is not None else 443 if parts.scheme == "https" else 80
    except ValueError:  # not a number, or above 65535
        port = 0
    if not 0 < port < 65536:
        raise Invalid("invalid_url", "url's port must be from 1 to 65535.", "url")
    if runtime().config.allow_private_webhooks:
        return url
    reason = webhook_targets.host_refusal(parts.hostname)
    if reason is None:
        try:
            reason = webhook_targets.addresses_refusal(webhook_targets.resolve(parts.hostname, port))
        except OSError:  # no address yet: every delivery checks again
            pass
    if reason:
        raise Invalid("invalid_url", f"url must reach the public internet: {reason}.", "url")
    return url


@bp.get("/v1/webhook_endpoints")
@requires("merchant")
def list_endpoints():
    with runtime().store.read() as tx:
        return {"object": "list", "data": webhooks.list_endpoints(tx, merchant_id=current_caller().merchant_id)}


@bp.delete("/v1/webhook_endpoints/<endpoint_id>")
@requires("merchant")
def delete_endpoint(endpoint_id):
    rt, merchant_id = runtime(), current_caller().merchant_id
    now = rt.now()
    return rt.store.write(lambda tx: webhooks.delete_endpoint(tx, merchant_id=merchant_id,
                                                              endpoint_id=endpoint_id, now=now))


@bp.get("/v1/events")
@requires("merchant")
def list_events():
    """Newest first; ?limit= and ?after=<event id> page through them."""
    limit, after = api.page_args()
    with runtime().store.read() as tx:
        return webhooks.list_events(tx, merchant_id=current_caller().merchant_id, limit=limit, after=after)


@bp.get("/v1/events/<event_id>")
@requires("merchant")
def get_event(event_id):
    with runtime().store.read() as tx:
        return webhooks.get_event(tx, merchant_id=current_caller().merchant_id, event_id=event_id)


@bp.get("/v1/events/<event_id>/deliveries")
@requires("merchant")
def list_deliveries(event_id):
    """Each delivery of the event and every attempt made (status code, error, duration)."""
    with runtime().store.read() as tx:
        return {"object": "list", "data": webhooks.list_deliveries(
            tx, merchant_id=current_caller().merchant_id, event_id=event_id)}
