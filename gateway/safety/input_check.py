"""The input stage: size limits, text rules and the guard model, before the prompt goes out.

The texts of a request are what its surface's codec reads (`RequestTexts`: the chat
messages' string contents and text parts, the completion prompt(s) ...). Every text is
scanned before anything is recorded, so a request that is blocked counts as blocked only,
and its other rules' redactions are never audited as if the request had gone through.
Rewrites (redact, mask) change the request body in place; the caller re-serialises the
body when `check` returns True.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.core.errors import BadRequest, ServiceUnavailable
from gateway.core.request import RequestTexts, TextSlot
from gateway.safety.guard_model import GuardModel, GuardUnavailable
from gateway.safety.policy import Action, DetectorName, RuleSpec
from gateway.safety.rules import REWRITING, Hit, Rule, RuleSet, first_block, redaction, rewrite

if TYPE_CHECKING:
    from gateway.safety.runtime import PolicyRuntime

CONTENT_POLICY_VIOLATION = "content_policy_violation"
INPUT = "input"
# Between the texts of a request scanned as one: no built-in pattern matches NUL, and "."
# does not match a newline.
_SEPARATOR = "\n\x00\n"


def policy_violation(message: str, param: str | None) -> BadRequest:
    return BadRequest(message, param, CONTENT_POLICY_VIOLATION)


def blocked_by(rule: str, detector: str, where: str) -> BadRequest:
    return policy_violation(
        f"The request was blocked by the content policy: rule '{rule}' ({detector}) "
        f"matched in {where}.",
        where,
    )


class InputChecker:
    """The input side of one policy; immutable, shared by its requests."""

    def __init__(
        self, rules: list[Rule], size_rules: list[RuleSpec], guard: GuardModel | None
    ) -> None:
        self._rules = rules
        self._size_rules = size_rules
        self._guard = guard
        self._by_role: dict[str, RuleSet] = {}

    async def check(self, texts: RequestTexts, runtime: PolicyRuntime) -> bool:
        """Raise on a block; apply redactions and masks; True when the body changed."""
        if texts.unreadable:
            raise policy_violation(
                f"This API key's content policy checks text: send '{texts.param}' as text, "
                "not token ids.",
                texts.param,
            )
        slots = texts.slots
        if self._size_rules:
            self._check_size(texts, runtime)
        changed = self._apply_rules(slots, runtime) if self._rules else False
        if self._guard is not None:
            await self._ask_guard(self._guard, texts, runtime)
        return changed

    def _rules_for(self, role: str) -> RuleSet:
        """The rules that look at texts of `role`; roles with the same rules share one set."""
        rules = self._by_role.get(role)
        if rules is None:
            applicable = tuple(r for r in self._rules if r.roles is None or role in r.roles)
            shared = next((s for s in self._by_role.values() if s.rules == applicable), None)
            rules = self._by_role[role] = shared or RuleSet(applicable)
        return rules

    def _hits(self, slots: list[TextSlot]) -> list[tuple[TextSlot, list[Hit]]]:
        """Each slot with its hits. The texts under the same rules are scanned as one text,
        joined by a separator no built-in pattern crosses: scanning costs per call, and a
        conversation is many short texts. A hit that crosses a separator anyway (an
        operator's regex) is dropped."""
        groups: dict[int, tuple[RuleSet, list[TextSlot]]] = {}
        for slot in slots:
            rules = self._rules_for(slot.role)
            groups.setdefault(id(rules), (rules, []))[1].append(slot)
        found = []
        for rules, members in groups.values():
            texts = [slot.text for slot in members]
            starts = list(
                itertools.accumulate((len(t) + len(_SEPARATOR) for t in texts[:-1]), initial=0)
            )
            per_slot: dict[int, list[Hit]] = {}
            for hit in rules.hits(_SEPARATOR.join(texts)):
                index = bisect.bisect_right(starts, hit.start) - 1
                base = starts[index]
                if hit.end - base <= len(texts[index]):
                    local = Hit(hit.start - base, hit.end - base, hit.rule)
                    per_slot.setdefault(index, []).append(local)
            found += [(members[index], hits) for index, hits in sorted(per_slot.items())]
        return found

    def _apply_rules(self, slots: list[TextSlot], runtime: PolicyRuntime) -> bool:
        found = self._hits(slots)
        for slot, hits in found:
            block = first_block(hits)
            if block is not None:
                rule = block.rule
                runtime.record(rule.name, rule.detector_name, INPUT, Action.BLOCK)
                raise blocked_by(rule.name, rule.detector_name, slot.param)
        changed = False
        replacement = _replacement(runtime)
        for slot, hits in found:
            for hit in hits:
                runtime.record(hit.rule.name, hit.rule.detector_name, INPUT, hit.rule.action)
            if any(hit.rule.action in REWRITING for hit in hits):
                text = slot.text
                slot.text = rewrite(text, 0, len(text), hits, replacement)
                changed = True
        return changed

    def _check_size(self, texts: RequestTexts, runtime: PolicyRuntime) -> None:
        chars = sum(len(slot.text) for slot in texts.slots)
        messages = texts.messages
        for rule in self._size_rules:
            limit = rule.max_prompt_chars
            if limit is not None and chars > limit:
                excess = f"the input has {chars} characters, more than {limit}"
            elif rule.max_messages is not None and messages > rule.max_messages:
                excess = f"the input has {messages} messages, more than {rule.max_messages}"
            else:
                continue
            runtime.record(rule.name, DetectorName.SIZE_LIMITS.value, INPUT, rule.action)
            if rule.action is Action.BLOCK:
                raise policy_violation(
                    f"The request was blocked by the content policy: rule '{rule.name}' "
                    f"(size_limits): {excess}.",
                    texts.param,
                )

    async def _ask_guard(
        self, guard: GuardModel, texts: RequestTexts, runtime: PolicyRuntime
    ) -> None:
        spec = guard.spec
        try:
            verdict = await guard.verdict("\n".join(slot.text for slot in texts.slots))
        except GuardUnavailable as error:
            runtime.record(spec.name, "guard_model", INPUT, "unavailable")
            if spec.fail_open:
                return
            raise ServiceUnavailable(
                f"The content safety check is unavailable ({error}); try again later.",
                "safety_check_unavailable",
            ) from None
        if not verdict.unsafe:
            return
        runtime.record(spec.name, "guard_model", INPUT, spec.action)
        if spec.action is Action.BLOCK:
            detail = f"guard_model: {verdict.reason}" if verdict.reason else "guard_model"
            raise policy_violation(
                f"The request was blocked by the content policy: rule '{spec.name}' ({detail}) "
                "judged the input unsafe.",
                texts.param,
            )


def _replacement(runtime: PolicyRuntime) -> Callable[[Hit, str], str]:
    vault = runtime.vault

    def replace(hit: Hit, value: str) -> str:
        if hit.rule.action is Action.MASK:
            return vault.placeholder(hit.rule.detector.label, value)
        return redaction(hit, value)

    return replace
