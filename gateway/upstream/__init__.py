"""Talking to vLLM replicas: the pooled HTTP transport."""
