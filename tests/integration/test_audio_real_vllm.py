"""Audio transcriptions and translations through the gateway in front of a real vLLM (CPU
build, tiny model). The tiny model is a text model, for which vLLM 0.32 serves no audio
routes: the client gets vLLM's status and message, whole or streamed, from the openai SDK as
from plain HTTP; names the tenant lacks are the gateway's own 404 and never reach vLLM. The
form the gateway sends is read by vLLM's own request model, as its FastAPI route reads it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import openai
import pytest

from gateway.surfaces.audio import Transcriptions
from tests.fixtures.gateway import Gateway
from tests.fixtures.real_vllm import RealVllm

pytestmark = pytest.mark.vllm

AUDIO = ("speech.wav", b"RIFF" + bytes(32_000), "audio/wav")
# vLLM 0.32's /v1/audio/transcriptions signature, on the form the gateway sends
READ_AS_VLLM = """
import json, sys
from typing import Annotated
from fastapi import FastAPI, Form
from fastapi.testclient import TestClient
from vllm.entrypoints.speech_to_text.transcription.protocol import TranscriptionRequest

app = FastAPI()

@app.post("/v1/audio/transcriptions")
async def create_transcriptions(request: Annotated[TranscriptionRequest, Form()]):
    read = ("model", "prompt", "timestamp_granularities", "stream", "stream_include_usage")
    fields = {name: getattr(request, name) for name in read}
    return {**fields, "file": [request.file.filename, (await request.file.read()).hex()]}

body, content_type = open(sys.argv[1], "rb").read(), sys.argv[2]
answer = TestClient(app).post("/v1/audio/transcriptions", content=body,
                              headers={"content-type": content_type})
print(json.dumps({"status": answer.status_code, "read": answer.json()}))
"""


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/v1/audio/translations"])
@pytest.mark.parametrize("stream", ["false", "true"])
def test_a_text_models_missing_audio_route_is_vllms_404(
    real_vllm: RealVllm, vllm_gateway: Gateway, path: str, stream: str
) -> None:
    form = {"model": "tenant-a", "stream": stream}
    direct = httpx.post(real_vllm.url + path, data=form, files={"file": AUDIO}, timeout=30)
    proxied = httpx.post(
        vllm_gateway.url + path,
        data=form,
        files={"file": AUDIO},
        headers=vllm_gateway.headers,
        timeout=30,
    )
    assert direct.status_code == 404, direct.text
    assert proxied.status_code == direct.status_code
    assert proxied.headers["content-type"] == "application/json"
    assert (
        proxied.json()["error"]["message"]
        == f"The model server answered: {direct.json()['detail']}"
    )


def test_the_openai_sdk_gets_vllms_error_and_the_gateways_own_404s(
    vllm_gateway: Gateway,
) -> None:
    client = openai.OpenAI(
        api_key=vllm_gateway.api_key, base_url=vllm_gateway.url + "/v1", max_retries=0
    )
    with pytest.raises(openai.NotFoundError, match="The model server answered: Not Found"):
        client.audio.transcriptions.create(model="base", file=AUDIO)
    with pytest.raises(openai.NotFoundError) as unknown:
        client.audio.transcriptions.create(model="their-model", file=AUDIO)
    assert isinstance(unknown.value.body, dict) and unknown.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="multipart/form-data"):
        client.post("/audio/transcriptions", body={"model": "base"}, cast_to=object)


def test_vllms_request_model_reads_the_form_the_gateway_checked(
    real_vllm: RealVllm, tmp_path: Path
) -> None:
    audio = b"RIFF\r\n--" + bytes(range(256)) * 4
    fields = {"model": "scribe", "stream": "yes", "prompt": "Ada", "cache_salt": "mine"}
    fields["timestamp_granularities[]"] = "word"
    client = httpx.Request("POST", "http://x", data=fields, files={"file": ("a.wav", audio)})
    surface = Transcriptions()
    request = surface.parse_request(client.read(), client.headers["content-type"].encode())
    request.body.pop("cache_salt")  # what the isolation stage strips
    form = tmp_path / "form"
    form.write_bytes(surface.upstream_body(request, "tenant-a"))
    script = [str(real_vllm.python), "-c", READ_AS_VLLM, str(form), request.content_type]
    done = subprocess.run(script, capture_output=True, text=True, timeout=120, check=True)
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer == {
        "status": 200,
        "read": {
            "model": "tenant-a",
            "prompt": "Ada",
            "timestamp_granularities": ["word"],
            "stream": True,
            "stream_include_usage": True,
            "file": ["a.wav", audio.hex()],
        },
    }
