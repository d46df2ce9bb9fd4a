"""The admin API (tenants, API keys, audit trail) and the CLI that drives it over HTTP."""

ADMIN_PREFIX = "/admin/v1"
