"""From a rule as written (RuleSpec) to a compiled Rule with its detector."""

from __future__ import annotations

from gateway.safety import credentials, deny, injection, pii
from gateway.safety.detector import Detector
from gateway.safety.policy import DetectorName, RuleSpec
from gateway.safety.rules import Rule

BUILT_IN: dict[DetectorName, Detector] = {
    DetectorName.EMAIL: pii.EMAIL,
    DetectorName.PHONE: pii.PHONE,
    DetectorName.PAYMENT_CARD: pii.PAYMENT_CARD,
    DetectorName.IBAN: pii.IBAN,
    DetectorName.US_SSN: pii.US_SSN,
    DetectorName.IP_ADDRESS: pii.IP_ADDRESS,
    DetectorName.SECRET: credentials.SECRET,
    DetectorName.PROMPT_INJECTION: injection.PROMPT_INJECTION,
}


def detector_for(spec: RuleSpec) -> Detector:
    if spec.detector is DetectorName.DENY_TERMS:
        return deny.deny_terms(spec.terms)
    if spec.detector is DetectorName.DENY_REGEX:
        return deny.deny_regex(spec.patterns, spec.window_chars)
    return BUILT_IN[spec.detector]


def compile_rule(spec: RuleSpec) -> Rule:
    roles = frozenset(spec.roles) if spec.roles is not None else None
    return Rule(spec.name, spec.detector.value, spec.action, detector_for(spec), roles)
