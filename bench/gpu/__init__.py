"""The GPU benchmark: stock vLLM on the lent GPU machine, direct and through the gateway."""
