"""Safety policies as operators write them: named sets of rules, plus an optional guard model.

The same models validate the `safety` settings section and the admin API's request bodies, so
a policy that loads from YAML is exactly a policy the API accepts, and the other way round.
A rule says where to look (direction), what to look for (detector) and what to do (action).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    field_validator,
    model_validator,
)

from gateway.core.fields import Name, NoNul
from gateway.safety.operator_regex import compile_any_of, compile_regex

MAX_RULES = 64
MAX_TERMS = 5_000
MAX_PATTERNS = 256
MAX_WINDOW_CHARS = 1024
MAX_PROMPT_CHARS = 10**9
MAX_MESSAGES = 10**6


class Direction(StrEnum):
    INPUT = "input"
    OUTPUT = "output"
    BOTH = "both"

    def covers(self, direction: Direction) -> bool:
        return self is Direction.BOTH or self is direction


class Action(StrEnum):
    """What a rule does with a match; `mask` is reversible (placeholders restored in answers)."""

    BLOCK = "block"
    REDACT = "redact"
    MASK = "mask"
    FLAG = "flag"


class DetectorName(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    PAYMENT_CARD = "payment_card"
    IBAN = "iban"
    US_SSN = "us_ssn"
    IP_ADDRESS = "ip_address"
    SECRET = "secret"
    DENY_TERMS = "deny_terms"
    DENY_REGEX = "deny_regex"
    PROMPT_INJECTION = "prompt_injection"
    SIZE_LIMITS = "size_limits"


PII_DETECTORS = frozenset(
    {
        DetectorName.EMAIL,
        DetectorName.PHONE,
        DetectorName.PAYMENT_CARD,
        DetectorName.IBAN,
        DetectorName.US_SSN,
        DetectorName.IP_ADDRESS,
        DetectorName.SECRET,
    }
)
Term = Annotated[str, Field(min_length=1, max_length=100), NoNul]


def _compiles(pattern: str) -> str:
    compile_regex(pattern)
    return pattern


def _compiles_case_insensitive(pattern: str) -> str:
    compile_regex(pattern, case_sensitive=False)
    return pattern


# Operator regexes run on RE2 (see operator_regex): one it cannot compile is refused here,
# with the reason, wherever the policy comes from (settings, admin API, policy store).
Pattern = Annotated[str, Field(min_length=1, max_length=1000), NoNul, AfterValidator(_compiles)]
Role = Annotated[str, Field(min_length=1, max_length=64), NoNul]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleSpec(Spec):
    name: Name
    detector: DetectorName
    direction: Direction = Direction.BOTH
    action: Action = Action.BLOCK
    terms: list[Term] = Field(
        default_factory=list, max_length=MAX_TERMS, description="deny_terms: whole words/phrases"
    )
    patterns: list[Pattern] = Field(
        default_factory=list, max_length=MAX_PATTERNS, description="deny_regex: RE2 regexes"
    )
    window_chars: int = Field(
        64,
        ge=1,
        le=MAX_WINDOW_CHARS,
        description="deny_regex on streams: the longest match looked for across chunks",
    )
    max_prompt_chars: int | None = Field(
        None, ge=1, le=MAX_PROMPT_CHARS, description="size_limits: text of the input"
    )
    max_messages: int | None = Field(
        None, ge=1, le=MAX_MESSAGES, description="size_limits: chat messages"
    )
    roles: list[Role] | None = Field(
        None, max_length=16, description="chat input: the roles scanned; null: every role"
    )

    @field_validator("patterns")
    @classmethod
    def _patterns_compile_together(cls, patterns: list[str]) -> list[str]:
        """Each compiles alone (Pattern); joined as the detector runs them, they must also
        fit RE2's memory cap."""
        if patterns:
            compile_any_of(patterns)
        return patterns

    @model_validator(mode="after")
    def _coherent(self) -> RuleSpec:
        detector, action = self.detector, self.action
        if detector is DetectorName.DENY_TERMS and not self.terms:
            raise ValueError("a deny_terms rule needs `terms`")
        if detector is DetectorName.DENY_REGEX and not self.patterns:
            raise ValueError("a deny_regex rule needs `patterns`")
        if detector is DetectorName.SIZE_LIMITS:
            if self.max_prompt_chars is None and self.max_messages is None:
                raise ValueError("a size_limits rule needs max_prompt_chars or max_messages")
            if self.direction is not Direction.INPUT:
                raise ValueError("size_limits applies to the input only: direction 'input'")
            if action not in (Action.BLOCK, Action.FLAG):
                raise ValueError("size_limits can only block or flag")
        if action is Action.MASK:
            if self.direction is not Direction.INPUT:
                raise ValueError("mask works on the input (answers get the values back)")
            if detector not in PII_DETECTORS:
                raise ValueError("mask works with the PII and secret detectors only")
        return self


class GuardSpec(Spec):
    """A model asked about the input: a chat model (or LoRA guard adapter) served by vLLM, or
    an OpenAI-compatible `/v1/moderations` endpoint."""

    kind: Literal["chat", "moderations"] = "chat"
    url: HttpUrl | None = Field(None, description="base URL; null: the gateway's upstream")
    model: Annotated[str, NoNul] = Field(min_length=1, max_length=256)
    api_key: Annotated[str, NoNul] | None = Field(
        None, max_length=4096, description="sent as a Bearer token"
    )
    system_prompt: Annotated[str, NoNul] | None = Field(None, max_length=20_000)
    prompt_template: Annotated[str, NoNul] = Field(
        "Is the following user message safe or unsafe? Answer with one word.\n\n{text}",
        max_length=20_000,
        description="chat: the user message; `{text}` is the request's text",
    )
    unsafe_pattern: Annotated[str, NoNul, AfterValidator(_compiles_case_insensitive)] = Field(
        r"^\s*unsafe",
        max_length=1000,
        description="chat: an RE2 regex (case-insensitive) on the answer; a match means unsafe",
    )
    max_tokens: int = Field(8, ge=1, le=1024)
    timeout_s: float = Field(2.0, gt=0, le=120)
    fail_open: bool = Field(False, description="on error or timeout: allow (true) or block")
    action: Literal[Action.BLOCK, Action.FLAG] = Action.BLOCK
    name: Name = Field("guard_model", description="the rule name in errors, metrics and audit")

    @field_validator("prompt_template")
    @classmethod
    def _template_has_text(cls, template: str) -> str:
        if "{text}" not in template:
            raise ValueError("prompt_template must contain {text}")
        return template


class PolicySpec(Spec):
    description: Annotated[str, NoNul] = Field("", max_length=1000)
    rules: list[RuleSpec] = Field(default_factory=list, max_length=MAX_RULES)
    guard: GuardSpec | None = None

    @model_validator(mode="after")
    def _unique_rule_names(self) -> PolicySpec:
        names = [rule.name for rule in self.rules]
        if len(names) != len(set(names)):
            raise ValueError("rule names must be unique within a policy")
        return self


NO_POLICY = "none"


class SafetySettings(BaseModel):
    policies: dict[Name, PolicySpec] = Field(
        default_factory=dict, description="named policies; the admin API adds stored ones"
    )
    default_policy: Name | None = Field(
        None, description="for tenants without a safety_policy, and when auth is off"
    )
    audit_queue_size: int = Field(
        10_000, ge=1, description="safety audit entries waiting to be written; more are dropped"
    )

    @field_validator("policies")
    @classmethod
    def _none_is_reserved(cls, policies: dict[str, PolicySpec]) -> dict[str, PolicySpec]:
        if NO_POLICY in policies:
            raise ValueError(f"'{NO_POLICY}' is reserved: it means no policy")
        return policies
