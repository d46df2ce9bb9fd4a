"""vllm-gateway: an OpenAI-compatible gateway for self-hosted vLLM."""
