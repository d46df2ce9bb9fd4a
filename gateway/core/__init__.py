"""The bottom layer: request types, the request context, typed errors, ASGI helpers, status
constants and field types. It imports nothing else of the gateway; everything else may import
it (the import contract in pyproject.toml enforces the order)."""
