"""LoRA adapters the gateway may load into vLLM at runtime: the registry (admin-owned records
of name, path on the vLLM host, base model, owning tenant, rank), the router's cached view of
it, and the loader that puts adapters onto replicas and takes them off again."""
