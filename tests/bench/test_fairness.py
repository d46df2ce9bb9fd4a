"""The fair queue's rule across processes, simulated in virtual time (bench/fairness.py): the
quiet tenants' p99 time to first token beside a noisy tenant, the same on every run."""

from __future__ import annotations

from bench.fairness import RULES, SIMULATED_BASELINE, Load, simulated_runs
from gateway.settings import FairQueueSettings

DEFAULTS = FairQueueSettings()
LOAD = Load(
    budget=64,
    ttft_ms=500.0,
    itl_ms=20.0,
    max_tokens=24,
    quiet_rps=9.0,
    noise_factor=10.0,
    duration_s=30.0,
    warmup_s=5.0,
    queue_timeout_s=5.0,
    reserved_share=DEFAULTS.reserved_share,
    active_window_s=DEFAULTS.active_window_s,
    holding_window_s=DEFAULTS.holding_window_s,
    seed=1,
)


def test_four_processes_keep_quiet_tenants_within_a_fifth_of_no_noise() -> None:
    runs = simulated_runs(LOAD, [4], seeds=5)
    quiet = runs[SIMULATED_BASELINE]
    assert quiet["quiet_requests"] > 3000 and quiet["quiet_refused"] == 0
    rise = {
        how: runs[f"noise, fair queue in 4 processes, simulated, {how}"]["quiet_ttft_p99_ms"]
        / quiet["quiet_ttft_p99_ms"]
        - 1
        for how in RULES
    }
    before, *parts, now = rise.values()
    assert now <= 0.20
    assert before > 0.30 and all(part > 0.20 for part in parts)  # each part alone falls short
