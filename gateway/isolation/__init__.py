"""Tenant isolation inside vLLM: who may share prefix-cache entries, whose requests vLLM
schedules first, and how the gateway shares vLLM's capacity between tenants under overload."""
