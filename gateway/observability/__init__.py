"""What operators see: Prometheus metrics, the per-request JSON log, and how both are served."""
