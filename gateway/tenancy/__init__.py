"""Tenants, API keys and the audit log: the data model, its stores, and key authentication."""
