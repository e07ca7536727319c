"""A local AI provider for tests and `make dev`: OpenAI-compatible, Azure and Anthropic
wire formats, served by a real HTTP server process with fault injection.

Real providers are outside this network; this is the one stand-in the project allows.
It fails the ways real providers fail: latency, 429 with Retry-After, 500/503,
malformed JSON, truncated streams, connections that hang, responses without usage.

Control it over HTTP (so tests drive a separate process exactly as the gateway does):

* ``POST /_control/faults`` ``{"faults": [{"kind": "429", "count": 2, "retry_after": 1}]}``
  queues faults consumed by the next matching requests (``count`` each, ``model`` to
  restrict one fault to one model); ``DELETE /_control/faults`` clears them.
* ``PUT /_control/keys`` ``{"keys": ["k1", "k2"]}``: accepted API keys (empty: any key).
* ``GET /_control/requests``: what was received (path, model, key fingerprint, stream).
* ``DELETE /_control/requests``: forget them.

Fault kinds: ``latency`` (``seconds``), ``429`` (``retry_after``), ``500``, ``503``,
``malformed`` (invalid JSON body), ``truncated`` (stream cut before ``[DONE]``),
``hang`` (accept, never answer), ``no_usage`` (omit the usage block), ``401``.
"""

from provider_sim.server import ProviderSimulator, run

__all__ = ["ProviderSimulator", "run"]
