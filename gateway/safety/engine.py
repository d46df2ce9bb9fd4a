"""The safety stage's entry point: which policy applies to a request, compiled and ready.

Policies come from the settings and from the policy store (a stored policy replaces a
configured one of the same name, so operators can change a policy at runtime). All of them
are compiled when loaded, and again whenever the tenancy store announces a change, so
`for_request` is a few dict lookups; a request under no policy costs nothing more.

Which policy: the API key's `metadata["safety_policy"]` if set, else the tenant's
`safety_policy`, else `safety.default_policy`; the name "none" means no policy. A name that
matches no policy fails the request (500): a safety policy that silently did nothing would be
worse than an error the operator sees at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.core.errors import InternalServerError, StoreUnavailable
from gateway.safety.events import SafetyEvents
from gateway.safety.guard_model import GuardModel, GuardSessions
from gateway.safety.policy import NO_POLICY, PolicySpec, SafetySettings
from gateway.safety.policy_store import PolicyStore
from gateway.safety.runtime import CompiledPolicy, PolicyRuntime
from gateway.settings import Settings
from gateway.tenancy.auth import Principal
from gateway.tenancy.store import Store

logger = logging.getLogger("gateway.safety")

KEY_METADATA_FIELD = "safety_policy"
REFRESH_S = 30.0


def missing_policy(name: str) -> InternalServerError:
    return InternalServerError(
        f"The content policy '{name}' assigned to this API key or its tenant is not defined.",
        "safety_policy_missing",
    )


class SafetyEngine:
    def __init__(
        self,
        settings: SafetySettings,
        policies: PolicyStore,
        audit_store: Store,
        upstream_url: str | None = None,
        upstream_api_key: str | None = None,
    ) -> None:
        self.events = SafetyEvents(settings.audit_queue_size)
        self._settings = settings
        self._policies = policies
        self._stored_loaded = False
        self._audit_store = audit_store
        self._upstream_url = upstream_url
        self._upstream_api_key = upstream_api_key
        self._sessions = GuardSessions()
        self._specs = dict(settings.policies)
        self._compiled = self._compile(self._specs)

    @classmethod
    def from_settings(cls, settings: Settings, policies: PolicyStore, store: Store) -> SafetyEngine:
        """The engine for the gateway: stored `policies`, audit entries into the tenancy
        `store`, guard models defaulting to the upstream."""
        upstream = settings.upstream
        url = str(upstream.url) if upstream.url is not None else None
        return cls(settings.safety, policies, store, url, upstream.api_key)

    @property
    def policies(self) -> PolicyStore:
        """For the admin API (`AdminState.safety_policies`)."""
        return self._policies

    @property
    def policy_names(self) -> list[str]:
        return sorted(self._compiled)

    async def start(self) -> None:
        """Load the stored policies. A store that is away does not stop the gateway: until
        a later reload reaches it, requests under a stored policy fail closed (503)."""
        await self.reload()

    async def reload(self) -> None:
        """Load the policies again, and compile them if they changed; a failure keeps the
        policies in force and is logged."""
        try:
            specs = dict(self._settings.policies)
            specs.update((p.name, p.spec) for p in await self._policies.load_all())
            if specs != self._specs:
                self._compiled = self._compile(specs)
                self._specs = specs
            self._stored_loaded = True
        except StoreUnavailable:  # logged once by the store's health
            return
        except Exception:
            logger.exception("could not reload the safety policies; keeping the previous ones")

    def for_request(self, principal: Principal | None) -> PolicyRuntime | None:
        name = self._settings.default_policy
        tenant_id = key_id = None
        if principal is not None:
            tenant_id, key_id = principal.tenant.id, principal.key.id
            name = (
                principal.key.metadata.get(KEY_METADATA_FIELD)
                or principal.tenant.safety_policy
                or name
            )
        if name is None or name == NO_POLICY:
            return None
        policy = self._compiled.get(name)
        if policy is None:
            if not self._stored_loaded:  # it may be a stored one, not read yet
                raise StoreUnavailable(self._policies.health.store, "not loaded yet")
            raise missing_policy(name)
        if policy.is_empty:
            return None
        return PolicyRuntime(policy, tenant_id, key_id, self.events)

    async def run_background(self, refresh_s: float = REFRESH_S) -> None:
        """Follow policy changes and write audit entries until cancelled. Changes are
        announced on the tenancy store's invalidation channel; a reload every `refresh_s`
        also catches one announced while the channel was down."""
        await asyncio.gather(
            self._audit_store.listen_invalidations(self.reload),
            self.events.write_audit(self._audit_store),
            self._refresh(refresh_s),
        )

    async def _refresh(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            await self.reload()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.events.flush_audit(self._audit_store)
        await self._sessions.close()
        await self._policies.close()

    def _compile(self, specs: dict[str, PolicySpec]) -> dict[str, CompiledPolicy]:
        return {name: CompiledPolicy(name, spec, self._guard(spec)) for name, spec in specs.items()}

    def _guard(self, spec: PolicySpec) -> GuardModel | None:
        if spec.guard is None:
            return None
        return GuardModel(spec.guard, self._sessions, self._upstream_url, self._upstream_api_key)
