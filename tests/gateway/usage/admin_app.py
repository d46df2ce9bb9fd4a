"""The admin app with the usage route, as a gateway builds it, for uvicorn to serve in tests.

`uvicorn --factory tests.gateway.usage.admin_app:create_app`, configured by the gateway's
environment variables. It lets the admin API and CLI be tested over HTTP without an upstream.
"""

from __future__ import annotations

import secrets

from fastapi import FastAPI

from gateway.admin.api import create_admin_app
from gateway.admin.usage_api import attach_usage
from gateway.settings import load_settings
from gateway.stores import open_stores
from gateway.tenancy.secrets import KeyHasher
from gateway.usage.ledger import UsageLedger


def create_app() -> FastAPI:
    settings = load_settings()
    stores = open_stores(settings.store)
    app = create_admin_app(
        stores.keys,
        KeyHasher(secrets.token_bytes(32)),  # no keys are created here
        settings.admin.all_keys(),
    )
    attach_usage(app, UsageLedger(stores.usage, settings.usage.flush_interval_s))
    return app
