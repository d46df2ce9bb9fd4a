"""The admin app, as a gateway builds it, for uvicorn to serve in tests.

`uvicorn --factory tests.gateway.usage.admin_app:create_app`, configured by the gateway's
environment variables. It lets the admin API and CLI be tested over HTTP without an upstream:
the router is never started, and names a replica nothing listens on.
"""

from __future__ import annotations

import secrets

from gateway.admin.api import create_admin_app
from gateway.admin.state import AdminApp, AdminState
from gateway.routing import Router
from gateway.settings import load_settings
from gateway.stores import open_stores
from gateway.tenancy.admin_keys import AdminAuth
from gateway.tenancy.secrets import KeyHasher
from gateway.usage.ledger import UsageLedger

NO_REPLICA = "http://127.0.0.1:9"


def create_app() -> AdminApp:
    settings = load_settings()
    stores = open_stores(settings.store)
    state = AdminState(
        store=stores.keys,
        hasher=KeyHasher(secrets.token_bytes(32)),  # no keys are created here
        auth=AdminAuth(settings.admin.all_keys()),
        ledger=UsageLedger.from_settings(stores.usage, settings.usage, settings.store),
        adapters=stores.adapters,
        router=Router([NO_REPLICA], settings.routing, stores.adapters),
        safety_policies=stores.safety_policies,
    )
    return create_admin_app(state)
