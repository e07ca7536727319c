"""OpenAI- and Anthropic-compatible surfaces (`/openai/v1/...`, `/anthropic/v1/...`).

Each surface translates its wire format to the gateway's neutral request
(app/ai/types.py) and back, and runs the same pipeline as `/v1/ai/generate`: API keys
and tokens, rate limits, token and money budgets, breakers, fallback, history, metrics
and traces (app/ai/generate.py, app/ai/streaming.py). Only the shapes differ: answers
and errors are the ones the official SDKs expect (docs/ai.md, "OpenAI and Anthropic
clients").
"""
