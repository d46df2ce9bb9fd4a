"""The client matrix: the same client calls against real vLLM direct and through gateways.

`calls.py` lists the calls (openai, openai-agents, langchain, anthropic, litellm, llama-index,
instructor, pydantic-ai, raw HTTP); `servers.py` starts vLLM CPU and the gateways in front of
it; `__main__.py` runs every call against every column and writes bench/results/clients.md and
clients.json. Run it with the clients' own venv (`make clients-matrix`):

    .venv-clients/bin/python -m bench.clients
"""
