"""/v1/wallets: create (operator), read, balance, statement, pay codes, concession (operator)."""
from flask import Blueprint

from gateway.core import payments, wallets
from gateway.http import api
from gateway.http.api.fare_charges import published_rules
from gateway.http.auth import current_caller, forget_caller, requires
from gateway.http.idempotency import idempotent
from gateway.http.runtime import runtime

bp = Blueprint("wallets", __name__)


@bp.post("/v1/wallets")
@requires("operator")
@idempotent
def create(tx):
    """Answers once with the wallet's credential ("wk_..."); only its hash is kept."""
    body = api.json_body(required=("customer_id", "currency"))
    wallet, credential = wallets.create_wallet(
        tx, customer_id=api.object_id(body, "customer_id"), currency=api.currency(body),
        now=runtime().now())
    return 201, {**wallet, "secret": credential, "credential": credential}  # credential: deprecated alias


@bp.get("/v1/wallets/<wallet_id>")
@requires("operator", "wallet")
def get(wallet_id):
    with runtime().store.read() as tx:
        return wallets.wallet_view(wallets.wallet_row(tx, current_caller(), wallet_id))


def fresh_balance(account_id: str, owner_id: str) -> dict:
    """The balance, after expiring any lapsed POS hold on the account.

    Holds expire lazily (the ledger resolves them on the next write); a balance
    read is such a moment, so a lapsed hold is never shown as still held.
    """
    rt = runtime()
    with rt.store.read() as tx:
        lapsed = payments.has_lapsed_holds(tx, account_id, now=rt.now())
    if lapsed:
        rt.store.write(lambda tx: payments.release_expired_holds(tx, now=rt.now()))
    with rt.store.read() as tx:
        return wallets.balance(tx, account_id, owner_id=owner_id)


# find_row(tx, caller, owner_id) is wallets.wallet_row or merchants.merchant_row: the owner's
# row if the caller may read it, not_found otherwise.

def owner_balance(find_row, owner_id: str) -> dict:
    """The fresh balance of a wallet's or merchant's ledger account."""
    with runtime().store.read() as tx:
        account_id = find_row(tx, current_caller(), owner_id)["account_id"]
    return fresh_balance(account_id, owner_id)


def owner_statement(find_row, owner_id: str) -> dict:
    """A page (?limit=, ?after=) of the postings of a wallet's or merchant's ledger account."""
    limit, after = api.page_args()
    with runtime().store.read() as tx:
        account_id = find_row(tx, current_caller(), owner_id)["account_id"]
        return wallets.statement(tx, account_id, owner_id=owner_id, limit=limit, after=after)


@bp.get("/v1/wallets/<wallet_id>/balance")
@requires("operator", "wallet")
def balance(wallet_id):
    return owner_balance(wallets.wallet_row, wallet_id)


@bp.get("/v1/wallets/<wallet_id>/statement")
@requires("operator", "wallet")
def statement(wallet_id):
    return owner_statement(wallets.wallet_row, wallet_id)


@bp.post("/v1/wallets/<wallet_id>/pay_codes")
@requires("wallet")
@idempotent
def pay_code(tx, wallet_id):
    """A single-use code for the till (POST /v1/pos/authorizations), valid 60 s."""
    api.json_body()
    wallet = wallets.wallet_row(tx, current_caller(), wallet_id)
    return 201, wallets.create_pay_code(tx, wallet, now=runtime().now())


@bp.post("/v1/wallets/<wallet_id>/concession")
@requires("operator")
@idempotent
def concession(tx, wallet_id):
    """{"class": "student"}: the concession class the wallet's linked cards are priced with,
    one of the published fare rules' classes. The wallet as GET shows it."""
    body = api.json_body(required=("class",))
    rules = published_rules("there are no concession classes to choose from", tx=tx)
    return 200, wallets.set_concession(tx, current_caller(), wallet_id, body["class"], rules=rules)


@bp.post("/v1/wallets/<wallet_id>/credential/revoke")
@requires("operator")
@idempotent
def revoke_credential(tx, wallet_id):
    """The wallet's credential stops working; money and cards stay. Reissue gives a new one."""
    api.json_body()
    wallet = wallets.revoke_credential(tx, current_caller(), wallet_id, now=runtime().now())
    forget_caller(runtime(), wallet_id)
    return 200, wallet


@bp.post("/v1/wallets/<wallet_id>/credential/reissue")
@requires("operator", "wallet")
@idempotent
def reissue_credential(tx, wallet_id):
    """A new credential, answered once as `secret`; the one before stops at once."""
    api.json_body()
    wallet, credential = wallets.reissue_credential(tx, current_caller(), wallet_id)
    forget_caller(runtime(), wallet_id)
    return 201, {**wallet, "secret": credential, "credential": credential}
