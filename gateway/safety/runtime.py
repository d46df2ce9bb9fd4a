"""A policy compiled once (CompiledPolicy) and applied to one request (PolicyRuntime).

The runtime is what the pipeline holds for a request: `check_input` before the upstream call,
`output_guard` for the answer. It carries the request's mask vault from the one to the other,
and records each (rule, direction, action) once per request for metrics and audit.
"""

from __future__ import annotations

from gateway.core.request import RequestTexts
from gateway.safety.events import SafetyEvent, SafetyEvents
from gateway.safety.guard_model import GuardModel
from gateway.safety.input_check import InputChecker
from gateway.safety.masking import PLACEHOLDER_MAX_CHARS, MaskVault
from gateway.safety.output_guard import OutputGuard
from gateway.safety.policy import DetectorName, Direction, PolicySpec
from gateway.safety.registry import compile_rule
from gateway.safety.rules import RuleSet
from gateway.safety.text_guard import TextGuard, TextKey


class CompiledPolicy:
    def __init__(self, name: str, spec: PolicySpec, guard: GuardModel | None) -> None:
        self.name = name
        text_rules = [rule for rule in spec.rules if rule.detector is not DetectorName.SIZE_LIMITS]
        size_rules = [rule for rule in spec.rules if rule.detector is DetectorName.SIZE_LIMITS]
        input_rules = [
            compile_rule(rule) for rule in text_rules if rule.direction.covers(Direction.INPUT)
        ]
        output_rules = [
            compile_rule(rule) for rule in text_rules if rule.direction.covers(Direction.OUTPUT)
        ]
        self.input = (
            InputChecker(input_rules, size_rules, guard)
            if input_rules or size_rules or guard is not None
            else None
        )
        self.output_rules = RuleSet(output_rules)
        # When the input was masked, streams must also hold back half-written placeholders.
        self.output_rules_restoring = RuleSet(output_rules, PLACEHOLDER_MAX_CHARS)

    @property
    def is_empty(self) -> bool:
        return self.input is None and not self.output_rules


class PolicyRuntime:
    __slots__ = ("_events", "_recorded", "key_id", "policy", "tenant_id", "vault")

    def __init__(
        self,
        policy: CompiledPolicy,
        tenant_id: str | None,
        key_id: str | None,
        events: SafetyEvents,
    ) -> None:
        self.policy = policy
        self.tenant_id = tenant_id
        self.key_id = key_id
        self.vault = MaskVault()
        self._events = events
        self._recorded: set[tuple[str, str, str]] = set()

    async def check_input(self, texts: RequestTexts) -> bool:
        """Raise GatewayError (400 content_policy_violation) on a block, or 503 when a
        fail-closed guard model cannot answer; True when the request body was rewritten."""
        checker = self.policy.input
        if checker is None:
            return False
        return await checker.check(texts, self)

    def output_guard(self) -> OutputGuard | None:
        """None when the answer needs nothing: no output rules and nothing masked."""
        rules = self._output_rules()
        return None if rules is None else OutputGuard(rules, self.vault, self)

    def text_guard(self) -> TextGuard[TextKey] | None:
        """The same rules for another surface's texts (gateway/safety/text_guard.py); None
        when the answer needs nothing, as for `output_guard`."""
        rules = self._output_rules()
        return None if rules is None else TextGuard(rules, self.vault, self)

    def _output_rules(self) -> RuleSet | None:
        """The output rules, holding back half-written placeholders when the input was masked;
        None when there are none and nothing was masked."""
        if self.vault:
            return self.policy.output_rules_restoring
        if self.policy.output_rules:
            return self.policy.output_rules
        return None

    def record(self, rule: str, detector: str, direction: str, action: str) -> None:
        """Count and audit what a rule did, once per request for each (rule, direction, action)."""
        key = (rule, direction, action)
        if key in self._recorded:
            return
        self._recorded.add(key)
        event = SafetyEvent(
            self.tenant_id, self.key_id, self.policy.name, rule, detector, direction, str(action)
        )
        self._events.record(event)
