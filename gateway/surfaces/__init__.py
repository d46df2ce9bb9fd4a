"""API surfaces as codecs: each one reads, rewrites and renders one API's shapes.

The pipeline knows no surface's shapes: it asks the request's `Surface` for the model, the
stream flag, the texts a policy reads, the token estimate, the bytes for vLLM, the chunk
filters of the answer and the error format. Adding a surface is adding a codec here and a
route in gateway/app.py.
"""

from gateway.surfaces.anthropic import CountTokens, Messages
from gateway.surfaces.audio import Transcriptions, Translations
from gateway.surfaces.base import Surface
from gateway.surfaces.chat import ChatCompletions
from gateway.surfaces.completions import Completions
from gateway.surfaces.embeddings import Embeddings
from gateway.surfaces.extras import Classify, Detokenize, Pooling, Rerank, Score, Tokenize
from gateway.surfaces.responses import Responses

# The surfaces served on POST, one codec each (stateless: shared by all requests); a codec
# class serving several paths has one instance per path.
SURFACES: tuple[Surface, ...] = (
    ChatCompletions(),
    Completions(),
    Embeddings(),
    Messages(),
    CountTokens(),
    Responses(),
    Tokenize("/tokenize"),
    Detokenize("/detokenize"),
    *(Rerank(path) for path in ("/rerank", "/v1/rerank", "/v2/rerank")),
    *(Score(path) for path in ("/score", "/v1/score")),
    Pooling("/pooling"),
    Classify("/classify"),
    Transcriptions(),
    Translations(),
)

__all__ = [
    "SURFACES",
    "ChatCompletions",
    "Completions",
    "CountTokens",
    "Embeddings",
    "Messages",
    "Surface",
]
