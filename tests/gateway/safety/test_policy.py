"""Policies as written in the settings file, the environment and admin API bodies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.safety.policy import Action, DetectorName, Direction, PolicySpec, SafetySettings
from gateway.settings import load_settings

YAML = """
safety:
  default_policy: strict
  policies:
    strict:
      description: no PII in, none out
      rules:
        - {name: mask-pii, detector: email, direction: input, action: mask}
        - {name: no-cards, detector: payment_card}
        - {name: banned, detector: deny_terms, direction: output, action: redact,
           terms: [acme secret]}
        - {name: size, detector: size_limits, direction: input, max_prompt_chars: 20000}
      guard:
        model: guard-adapter
        timeout_s: 1.5
"""


def test_policies_load_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(YAML)
    safety = load_settings(path).safety
    assert safety.default_policy == "strict"
    strict = safety.policies["strict"]
    assert [(r.detector, r.direction, r.action) for r in strict.rules] == [
        (DetectorName.EMAIL, Direction.INPUT, Action.MASK),
        (DetectorName.PAYMENT_CARD, Direction.BOTH, Action.BLOCK),
        (DetectorName.DENY_TERMS, Direction.OUTPUT, Action.REDACT),
        (DetectorName.SIZE_LIMITS, Direction.INPUT, Action.BLOCK),
    ]
    assert strict.guard is not None and strict.guard.fail_open is False


def test_policies_load_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    policies = {"p": {"rules": [{"name": "r", "detector": "email", "action": "flag"}]}}
    monkeypatch.setenv("VLLM_GATEWAY_SAFETY__POLICIES", json.dumps(policies))
    assert load_settings().safety.policies["p"].rules[0].action is Action.FLAG


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"detector": "deny_terms"}, "needs `terms`"),
        ({"detector": "deny_regex"}, "needs `patterns`"),
        ({"detector": "size_limits", "direction": "input"}, "max_prompt_chars or max_messages"),
        ({"detector": "size_limits", "max_messages": 3}, "direction 'input'"),
        (
            {
                "detector": "size_limits",
                "direction": "input",
                "max_messages": 3,
                "action": "redact",
            },
            "block or flag",
        ),
        ({"detector": "email", "action": "mask"}, "mask works on the input"),
        (
            {"detector": "prompt_injection", "direction": "input", "action": "mask"},
            "PII and secret",
        ),
    ],
)
def test_incoherent_rules_are_refused(rule: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PolicySpec.model_validate({"rules": [{"name": "r", **rule}]})


def test_rule_names_are_unique_and_none_is_reserved() -> None:
    rule = {"name": "r", "detector": "email"}
    with pytest.raises(ValidationError, match="unique"):
        PolicySpec.model_validate({"rules": [rule, rule]})
    with pytest.raises(ValidationError, match="reserved"):
        SafetySettings.model_validate({"policies": {"none": {}}})


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", r"invalid escape sequence: \1"),  # a backreference
        ("(?=x)y", "invalid perl operator: (?="),
        ("(?<!a)b", "invalid perl operator: (?<!"),
        ("a++", "bad repetition operator: ++"),  # possessive
        ("(?>a+)", "invalid perl operator: (?>"),  # atomic
        (r"end\Z", r"invalid escape sequence: \Z"),
        ("a{,3}", "write {0,3}"),
    ],
)
def test_patterns_re2_cannot_run_are_refused_at_their_place(pattern: str, reason: str) -> None:
    rule = {"name": "r", "detector": "deny_regex", "patterns": ["fine", pattern]}
    with pytest.raises(ValidationError) as refused:
        PolicySpec.model_validate({"rules": [rule]})
    (error,) = refused.value.errors()
    assert error["loc"] == ("rules", 0, "patterns", 1)
    assert reason in error["msg"] and "RE2" in error["msg"]

    guard = {"model": "g", "unsafe_pattern": pattern}
    with pytest.raises(ValidationError) as refused:
        PolicySpec.model_validate({"guard": guard})
    (error,) = refused.value.errors()
    assert error["loc"] == ("guard", "unsafe_pattern")
    assert reason in error["msg"]
