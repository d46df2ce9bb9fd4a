"""Launching the stock vLLM OpenAI server (multi-LoRA) and a CPU stand-in that speaks its API."""
