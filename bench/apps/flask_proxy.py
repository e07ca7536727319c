"""The floor of any Flask AI gateway: forward a generate to the provider, nothing else.

Bare Flask under the same gunicorn as ours, one module-level `httpx.Client` (keep-alive,
explicit timeouts) calling the provider's chat completions with the request's prompt,
and the provider's text and usage back as JSON. No auth, rate limit, token budget,
history, metrics, logs, retries, breaker or validation: what bench/ai_gateway.py
reports as `flask-proxy` is the latency a Flask + gunicorn + httpx hop adds on this
machine before a gateway does any work of its own. `PROVIDER_URL` is the provider's
base URL (…/v1), `PROVIDER_KEY` its key.
"""

import os

import httpx
from flask import Flask, jsonify, request

application = Flask(__name__)
_client = httpx.Client(
    base_url=os.environ.get("PROVIDER_URL", "http://127.0.0.1:9/v1"),
    headers={"Authorization": f"Bearer {os.environ.get('PROVIDER_KEY', '')}"},
    timeout=httpx.Timeout(10.0, connect=2.0),
)


@application.post("/v1/ai/generate")
def generate():  # type: ignore[no-untyped-def]
    """Forward the prompt; answer with the provider's text and usage."""
    body = request.get_json()
    reply = _client.post(
        "/chat/completions",
        json={
            "model": body.get("model", "sim-small"),
            "max_tokens": body["max_tokens"],
            "messages": [{"role": "user", "content": body["prompt"]}],
        },
    )
    data = reply.json()
    return jsonify(text=data["choices"][0]["message"]["content"], usage=data["usage"])
