"""Scripts for operators and the docs: fetch Prometheus, run a demo stack, render the dashboard."""
