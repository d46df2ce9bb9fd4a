"""The stand-in's Starlette app: plain routes over one shared Engine, no request models,
so that a request costs little more than uvicorn's own parsing."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from vllm_server.standin.admin import AdminRoutes
from vllm_server.standin.config import StandinConfig
from vllm_server.standin.encode import EncodeRoutes
from vllm_server.standin.engine import Engine
from vllm_server.standin.errors import (
    VLLMError,
    anthropic_errors,
    render_http_exception,
    render_vllm_error,
)
from vllm_server.standin.generation import GenerationRoutes
from vllm_server.standin.metrics import MetricsEndpoint


def create_app(config: StandinConfig) -> Starlette:
    engine = Engine(config)
    admin = AdminRoutes(engine)
    generation = GenerationRoutes(engine)
    encode = EncodeRoutes(engine)
    routes = [
        Route("/v1/chat/completions", generation.chat, methods=["POST"]),
        Route("/v1/completions", generation.completions, methods=["POST"]),
        Route("/v1/responses", generation.responses, methods=["POST"]),
        Route("/v1/responses/{response_id}", generation.retrieve_response, methods=["GET"]),
        Route("/v1/messages", anthropic_errors(generation.messages), methods=["POST"]),
        Route("/v1/messages/count_tokens", anthropic_errors(encode.count_tokens), methods=["POST"]),
        Route("/v1/embeddings", encode.embeddings, methods=["POST"]),
        Route("/v1/audio/transcriptions", generation.transcriptions, methods=["POST"]),
        Route("/v1/audio/translations", generation.translations, methods=["POST"]),
        Route("/tokenize", encode.tokenize, methods=["POST"]),
        Route("/detokenize", encode.detokenize, methods=["POST"]),
        Route("/v1/models", admin.models, methods=["GET"]),
        Route("/v1/load_lora_adapter", admin.load_lora_adapter, methods=["POST"]),
        Route("/v1/unload_lora_adapter", admin.unload_lora_adapter, methods=["POST"]),
        Route("/health", admin.health, methods=["GET"]),
        Route("/version", admin.version, methods=["GET"]),
        Route("/metrics", MetricsEndpoint(engine).scrape, methods=["GET"]),
        Route("/standin/faults", admin.get_faults, methods=["GET"]),
        Route("/standin/faults", admin.set_faults, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            VLLMError: render_vllm_error,
            HTTPException: render_http_exception,
        },
    )
