"""Shared fixtures: each fixture module in tests/fixtures owns one real process kind."""

pytest_plugins = [
    "tests.fixtures.processes",
    "tests.fixtures.standin",
    "tests.fixtures.otlp",  # before real_vllm, which imports it
    "tests.fixtures.real_vllm",
    "tests.fixtures.redis",
    "tests.fixtures.redis_topologies",
    "tests.fixtures.postgres",
    "tests.fixtures.gateway",
]
