"""The vLLM replicas behind the gateway: who they are (static URLs, DNS names resolving to
many), whether they answer (health checks that eject and re-admit), how loaded they are and
which LoRA adapters they hold (scraped from /metrics and /v1/models)."""
