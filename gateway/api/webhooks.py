"""/v1/webhook_endpoints and /v1/events: a merchant's endpoints, its events and their deliveries."""
from flask import Blueprint

from gateway import api, webhooks
from gateway.app import runtime
from gateway.auth import current_caller, requires
from gateway.idempotency import idempotent

bp = Blueprint("webhooks", __name__)


@bp.post("/v1/webhook_endpoints")
@requires("merchant")
@idempotent
def create_endpoint(tx):
    """Answers once with the endpoint's signing secret ("whsec_..."); lists never show it."""
    body = api.json_body(required=("url",), optional=("event_types",))
    return 201, webhooks.create_endpoint(tx, merchant_id=current_caller().merchant_id, url=body["url"],
                                         event_types=body.get("event_types"), now=runtime().now())


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
