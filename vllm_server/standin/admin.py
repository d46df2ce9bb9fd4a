"""The non-generating routes: /health, /version, /v1/models, runtime LoRA loading, and the
stand-in's own /standin/faults.

The stand-in reads no weights, so any non-empty adapter path loads, with one exception
kept from vLLM's behaviour: at runtime, an absolute path that does not exist on disk is a
404 NotFoundError ("No adapter found"). Adapters given at start-up (--lora) are taken as
they are, so a demo can name paths like /adapters/tenant-a.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from vllm_server.standin.config import VLLM_API_VERSION
from vllm_server.standin.engine import Engine
from vllm_server.standin.errors import VLLMError, bad_request, json_response, read_json_object


def _permission(created: int) -> dict[str, object]:
    return {
        "id": f"modelperm-{secrets.token_hex(16)}",
        "object": "model_permission",
        "created": created,
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }


def _model_card(
    model_id: str, root: str, parent: str | None, max_model_len: int | None
) -> dict[str, object]:
    created = int(time.time())
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": root,
        "parent": parent,
        "max_model_len": max_model_len,
        "permission": [_permission(created)],
    }


def _invalid_user_input(message: str) -> VLLMError:
    return VLLMError(400, "InvalidUserInput", message)


class AdminRoutes:
    def __init__(self, engine: Engine):
        self._engine = engine

    async def health(self, _request: Request) -> Response:
        return Response(status_code=200)

    async def version(self, _request: Request) -> Response:
        return json_response({"version": VLLM_API_VERSION})

    async def models(self, _request: Request) -> Response:
        config = self._engine.config
        base = config.served_model_name
        cards = [_model_card(base, base, None, config.max_model_len)]
        cards += [
            _model_card(name, path, base, None) for name, path in self._engine.adapters.items()
        ]
        return json_response({"object": "list", "data": cards})

    async def load_lora_adapter(self, request: Request) -> Response:
        body = await read_json_object(request)
        name, path = body.get("lora_name"), body.get("lora_path")
        if not (name and path and isinstance(name, str) and isinstance(path, str)):
            raise _invalid_user_input("Both 'lora_name' and 'lora_path' must be provided.")
        adapters = self._engine.adapters
        if name in adapters and body.get("load_inplace") is not True:
            raise _invalid_user_input(
                f"The lora adapter '{name}' has already been loaded. If you want to load the "
                "adapter in place, set 'load_inplace' to True."
            )
        if path.startswith("/") and not Path(path).exists():
            raise VLLMError(
                404, "NotFoundError", f"Loading lora {name} failed: No adapter found for {path}"
            )
        adapters[name] = path
        # vLLM answers with a bare string body and no content-type
        return Response(f"Success: LoRA adapter '{name}' added successfully.", 200)

    async def unload_lora_adapter(self, request: Request) -> Response:
        body = await read_json_object(request)
        name = body.get("lora_name")
        if not name or not isinstance(name, str):
            raise _invalid_user_input("'lora_name' needs to be provided to unload a LoRA adapter.")
        if name not in self._engine.adapters:
            raise VLLMError(404, "NotFoundError", f"The lora adapter '{name}' cannot be found.")
        del self._engine.adapters[name]
        return Response(f"Success: LoRA adapter '{name}' removed successfully.", 200)

    async def get_faults(self, _request: Request) -> Response:
        return json_response(self._engine.faults.as_dict())

    async def set_faults(self, request: Request) -> Response:
        """Partial update of the latency/fault knobs; answers with all of them."""
        body = await read_json_object(request)
        try:
            self._engine.faults.update(body)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return json_response(self._engine.faults.as_dict())
