"""The official SDKs against a running API (real gunicorn) and the provider simulator.

`openai`, `anthropic` and `langchain-openai` from PyPI are pointed at `/openai/v1` and
`/anthropic`, with API keys created through the API; the simulator speaks OpenAI's,
Azure's and Anthropic's wire formats. Nothing of ours is mocked.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Final

import anthropic
import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.ai.live import LiveAI, live_ai
from tests.ai.support import Sim, provider_spec
from tests.support.processes import wait_for

pytestmark = pytest.mark.slow

ADMIN: Final = ("ai-compat-admin", ("admin",))
WEATHER_TOOL: Final = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def _admin_put(live: LiveAI, path: str, spec: dict[str, Any]) -> None:
    response = httpx.put(
        f"{live.url}/v1/admin/{path}", json={"spec": spec}, headers=live.token(*ADMIN), timeout=10
    )
    assert response.status_code in (200, 201), response.text


def _routed(live: LiveAI, model: str) -> bool:
    admin = live.token(*ADMIN)
    answer = httpx.get(f"{live.url}/openai/v1/models", headers=admin, timeout=10)
    return answer.status_code == 200 and any(m["id"] == model for m in answer.json()["data"])


@pytest.fixture(scope="module")
def live(
    database_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    _sim_a: Sim,
    _sim_b: Sim,
    _sim_slow: Sim,
) -> Iterator[LiveAI]:
    """gunicorn with an OpenAI provider (simulator a), an Azure deployment and an Anthropic
    provider (simulator b), a slow one, and routes over them."""
    for sim in (_sim_a, _sim_b, _sim_slow):
        sim.reset()
    with live_ai(
        database_url,
        redis_url,
        tmp_path_factory.mktemp("compat-sdks"),
        threads=8,
        AI_ALLOWED_HTTP_HOSTS="127.0.0.1",
        AI_RETRY_BASE_SECONDS="0.05",
        AI_BREAKER_FAILURES="1000",
        AI_REQUEST_DEADLINE="10",
    ) as api:
        common = {"secret": False, "maxRetries": 0}
        api.put_provider(
            "oa", provider_spec(_sim_a, type="OpenAI", models=("gpt-sim", "emb-sim"), **common)
        )
        api.put_provider(
            "az", provider_spec(_sim_b, type="AzureOpenAI", models=("gpt-sim-prod",), **common)
        )
        api.put_provider(
            "an", provider_spec(_sim_b, type="Anthropic", models=("claude-sim",), **common)
        )
        api.put_provider(
            "slow", provider_spec(_sim_slow, type="OpenAI", models=("slow-sim",), **common)
        )
        api.put_provider(
            "pricey",
            provider_spec(
                _sim_a, type="OpenAI", models=("pricey-sim",), prices=("1000", "1000"), **common
            ),
        )
        routes = {
            "chat-default": [("oa", "gpt-sim"), ("az", "gpt-sim-prod")],
            "chat-claude": [("oa", "gpt-sim"), ("an", "claude-sim")],
        }
        for name, targets in routes.items():
            spec = {"model": name, "targets": [{"provider": p, "model": m} for p, m in targets]}
            _admin_put(api, f"ai-model-routes/{name}", spec)
        _admin_put(
            api,
            "ai-model-routes/admins-only",
            {"model": "admins-only", "roles": ["admin"],
             "targets": [{"provider": "oa", "model": "gpt-sim"}]},
        )  # fmt: skip
        for name in (*routes, "admins-only"):
            wait_for(lambda n=name: _routed(api, n), timeout=15, interval=0.1, what=name)
        yield api


class Account:
    """A registered user, their access token, and API keys made through the API."""

    def __init__(self, live: LiveAI) -> None:
        self.live = live
        email = f"compat-{uuid.uuid4().hex[:10]}@example.com"
        credentials = {"email": email, "password": "pw-" + uuid.uuid4().hex}
        url = live.url
        assert httpx.post(f"{url}/v1/auth/register", json=credentials).status_code == 202
        login = httpx.post(f"{url}/v1/auth/login", json=credentials, timeout=30)
        assert login.status_code == 200, login.text
        self.token = login.json()["data"]["access_token"]
        me = httpx.get(f"{url}/v1/auth/me", headers=self.bearer, timeout=10)
        assert me.status_code == 200, me.text
        self.user_id = str(me.json()["data"]["id"])

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def key(self, *scopes: str) -> str:
        created = httpx.post(
            f"{self.live.url}/v1/auth/api-keys",
            json={"name": f"k-{uuid.uuid4().hex[:6]}", "scopes": list(scopes or ["ai:generate"])},
            headers=self.bearer,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        key: str = created.json()["data"]["key"]
        return key

    def rows(self, n: int) -> list[Any]:
        """The user's history rows once `n` are written (the drainer writes them)."""
        found: list[Any] = []

        def enough() -> bool:
            found[:] = self.live.rows(self.user_id)
            return len(found) >= n

        wait_for(enough, timeout=10, interval=0.1, what=f"{n} history rows")
        return sorted(found, key=lambda r: r.created_at)


@pytest.fixture(scope="module")
def account(live: LiveAI) -> Account:
    return Account(live)


@pytest.fixture(scope="module")
def key(account: Account) -> str:
    return account.key("ai:generate")


def oai(live: LiveAI, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/openai/v1", api_key=key, max_retries=0)


def claude(live: LiveAI, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{live.url}/anthropic", api_key=key, max_retries=0)


# --- OpenAI SDK --------------------------------------------------------------------------


def test_openai_sync_completion_with_usage_request_id_and_history(
    live: LiveAI, _sim_a: Sim
) -> None:
    who = Account(live)
    client = oai(live, who.key())

    raw = client.chat.completions.with_raw_response.create(
        model="gpt-sim",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "one two three"}]},
        ],
        max_completion_tokens=32,
        temperature=0.5,
        top_p=0.9,
        seed=7,
        stop=["zzz"],
        user="end-user-1",
    )
    completion = raw.parse()

    assert raw.headers["x-request-id"]
    assert completion.choices[0].message.content == "echo: be brief one two three"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-sim"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    sent = [r for r in _sim_a.requests() if r["model"] == "gpt-sim"][-1]["body"]
    assert sent["seed"] == 7 and sent["stop"] == ["zzz"] and sent["user"] == "end-user-1"
    assert sent["max_completion_tokens"] == 32 and sent["top_p"] == 0.9
    (row,) = who.rows(1)
    assert row.surface == "openai" and row.outcome == "success"
    assert completion.id == f"chatcmpl-{row.id}"
    assert row.input_tokens == completion.usage.prompt_tokens
    assert row.request_id == raw.headers["x-request-id"]


async def _async_call(live: LiveAI, key: str) -> str:
    client = openai.AsyncOpenAI(base_url=f"{live.url}/openai/v1", api_key=key, max_retries=0)
    try:
        completion = await client.chat.completions.create(
            model="gpt-sim", messages=[{"role": "user", "content": "async hello"}]
        )
        return completion.choices[0].message.content or ""
    finally:
        await client.close()


def test_openai_async_client(live: LiveAI, key: str) -> None:
    import asyncio

    assert asyncio.run(_async_call(live, key)) == "echo: async hello"


def test_openai_streaming_ends_with_usage_then_done(live: LiveAI, key: str) -> None:
    client = oai(live, key)

    chunks = list(
        client.chat.completions.create(
            model="gpt-sim",
            messages=[{"role": "user", "content": "stream these words"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream these words"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_openai_tools_round_trip(live: LiveAI, key: str) -> None:
    client = oai(live, key)
    messages: list[Any] = [{"role": "user", "content": "weather in Paris?"}]

    first = client.chat.completions.create(
        model="gpt-sim", messages=messages, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny 21C"})
    second = client.chat.completions.create(
        model="gpt-sim", messages=messages, tools=[WEATHER_TOOL]
    )

    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "sim"}  # type: ignore[union-attr]
    assert second.choices[0].finish_reason == "stop"
    assert "sunny 21C" in (second.choices[0].message.content or "")


def test_openai_streamed_tool_call(live: LiveAI, key: str) -> None:
    client = oai(live, key)

    chunks = list(
        client.chat.completions.create(
            model="gpt-sim",
            messages=[{"role": "user", "content": "weather?"}],
            tools=[WEATHER_TOOL],
            stream=True,
        )
    )

    pieces = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert pieces[0].function.name == "get_weather" and pieces[0].id  # type: ignore[union-attr]
    arguments = "".join(p.function.arguments or "" for p in pieces)  # type: ignore[union-attr]
    assert json.loads(arguments) == {"city": "sim"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


class Weather(BaseModel):
    city: str
    degrees: int


def test_openai_json_schema_and_json_object(live: LiveAI, key: str, _sim_a: Sim) -> None:
    client = oai(live, key)

    parsed = client.chat.completions.parse(
        model="gpt-sim",
        messages=[{"role": "user", "content": "weather as JSON"}],
        response_format=Weather,
    )
    loose = client.chat.completions.create(
        model="gpt-sim",
        messages=[{"role": "user", "content": "any JSON"}],
        response_format={"type": "json_object"},
    )

    assert parsed.choices[0].message.parsed == Weather(city="sim", degrees=1)
    sent = [r for r in _sim_a.requests() if "response_format" in r["params"]]
    assert sent[-2]["body"]["response_format"]["json_schema"]["name"] == "Weather"
    assert json.loads(loose.choices[0].message.content or "") == {"echo": "any JSON"}


def test_openai_embeddings(live: LiveAI, key: str) -> None:
    client = oai(live, key)

    floats = client.embeddings.create(model="emb-sim", input=["alpha", "beta"], dimensions=4)
    default = client.embeddings.create(model="emb-sim", input="alpha", dimensions=4)

    assert [len(d.embedding) for d in floats.data] == [4, 4]
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert floats.usage.prompt_tokens == 2


def test_openai_models_list_shows_what_the_caller_may_use(
    live: LiveAI, key: str, account: Account
) -> None:
    client = oai(live, key)

    ids = {m.id for m in client.models.list()}

    assert {"gpt-sim", "chat-default", "chat-claude", "claude-sim"} <= ids
    assert "admins-only" not in ids  # a route for admins only
    assert client.models.retrieve("chat-default").id == "chat-default"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("admins-only")


def test_openai_errors_map_to_the_sdk_exception_classes(
    live: LiveAI, key: str, account: Account, _sim_a: Sim
) -> None:
    with pytest.raises(openai.AuthenticationError) as auth:
        oai(live, "sapi_" + "x" * 40).models.list()
    assert auth.value.status_code == 401

    with pytest.raises(openai.PermissionDeniedError) as denied:
        oai(live, account.key("profile:read")).chat.completions.create(
            model="gpt-sim", messages=[{"role": "user", "content": "hi"}]
        )
    assert denied.value.code == "AUTH_INSUFFICIENT_SCOPE"

    client = oai(live, key)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert missing.value.code == "AI_MODEL_NOT_FOUND"
    assert missing.value.response.headers["x-request-id"]

    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="gpt-sim", messages=[{"role": "user", "content": "x"}], temperature=5
        )
    assert bad.value.param == "temperature"

    with pytest.raises(openai.BadRequestError) as unsupported:
        client.chat.completions.create(
            model="claude-sim", messages=[{"role": "user", "content": "x"}], seed=1
        )
    assert unsupported.value.code == "AI_UNSUPPORTED_PARAMETER"
    assert unsupported.value.param == "seed"

    with pytest.raises(openai.BadRequestError) as unknown:
        client.chat.completions.create(
            model="gpt-sim",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"reasoning": {"effort": "high"}},
        )
    assert unknown.value.param == "reasoning"

    _sim_a.fault("500", count=5, model="gpt-sim")
    try:
        with pytest.raises(openai.InternalServerError) as down:
            client.chat.completions.create(
                model="gpt-sim", messages=[{"role": "user", "content": "x"}]
            )
        assert down.value.status_code == 502
        assert down.value.code == "AI_PROVIDER_ERROR"
    finally:
        _sim_a.reset()

    _sim_a.fault("429", count=5, model="gpt-sim", retry_after=30)
    try:
        with pytest.raises(openai.InternalServerError) as busy:
            client.chat.completions.create(
                model="gpt-sim", messages=[{"role": "user", "content": "x"}]
            )
        assert busy.value.status_code == 503
        assert busy.value.response.headers["retry-after"] == "30"
    finally:
        _sim_a.reset()


def test_a_money_budget_stops_a_key_with_rate_limit_error_and_retry_after(
    live: LiveAI,
) -> None:
    _admin_put(
        live,
        "rate-limit-policies/compat-spend",
        {"rules": [{"name": "spend", "key": "apiKey",
                    "match": {"paths": ["/v1/ai/generate"], "methods": ["POST"]},
                    "limits": [{"usd": "0.05", "window": "1d"}]}]},
    )  # fmt: skip
    who = Account(live)
    client = oai(live, who.key())
    other = oai(live, who.key())
    body: dict[str, Any] = {
        "model": "pricey-sim",
        "messages": [{"role": "user", "content": "four words of prompt"}],
        "max_tokens": 16,
    }
    answered = 0
    try:
        with pytest.raises(openai.RateLimitError) as refused:
            for _ in range(10):
                client.chat.completions.create(**body)
                answered += 1
        assert 1 <= answered <= 5
        assert refused.value.code == "AI_BUDGET_EXCEEDED"
        assert int(refused.value.response.headers["retry-after"]) >= 1
        assert "resets" in refused.value.message or "covers this call again" in str(
            refused.value.message
        )
        assert other.chat.completions.create(**body).choices[0].message.content
    finally:
        httpx.delete(
            f"{live.url}/v1/admin/rate-limit-policies/compat-spend",
            headers=live.token(*ADMIN),
            timeout=10,
        )
    rows = who.rows(answered + 1)
    assert sum(Decimal(r.cost_usd) for r in rows) <= Decimal("0.05")


def test_a_cancelled_stream_is_charged_only_what_was_delivered(
    live: LiveAI, _sim_slow: Sim
) -> None:
    who = Account(live)
    client = oai(live, who.key())

    stream = client.chat.completions.create(
        model="slow-sim",
        messages=[{"role": "user", "content": " ".join(f"w{i}" for i in range(60))}],
        stream=True,
        max_tokens=200,
    )
    received = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received.append(chunk.choices[0].delta.content)
        if len(received) == 3:
            break
    stream.close()

    (row,) = who.rows(1)
    assert row.outcome == "cancelled" and row.stream
    assert 3 <= row.output_tokens < 20  # the full answer is 61 words
    assert row.response.startswith("echo: w0")


def test_spend_sums_what_history_rows_say(live: LiveAI) -> None:
    who = Account(live)
    client = oai(live, who.key())
    for prompt in ("a b c", "d e f g"):
        client.chat.completions.create(
            model="gpt-sim", messages=[{"role": "user", "content": prompt}]
        )
    rows = who.rows(2)

    spend = httpx.get(f"{live.url}/v1/ai/spend", headers=who.bearer, timeout=10)

    assert spend.status_code == 200, spend.text
    data = spend.json()["data"]
    assert Decimal(data["total"]["cost_usd"]) == sum(Decimal(r.cost_usd) for r in rows)
    assert data["total"]["calls"] == 2
    assert data["days"][0]["model"] == "gpt-sim"
    admin = httpx.get(
        f"{live.url}/v1/admin/ai-spend", params={"group_by": "user", "limit": "1000"},
        headers=live.token(*ADMIN), timeout=10,
    )  # fmt: skip
    assert admin.status_code == 200, admin.text
    (mine,) = [e for e in admin.json()["data"]["data"] if e["user"] == who.user_id]
    assert mine["cost_usd"] == data["total"]["cost_usd"]


# --- routing and fallback ----------------------------------------------------------------


def test_fallback_from_openai_to_an_azure_deployment_with_another_name(
    live: LiveAI, key: str, _sim_a: Sim, _sim_b: Sim
) -> None:
    _sim_b.reset()
    _sim_a.fault("500", count=1, model="gpt-sim")
    try:
        completion = oai(live, key).chat.completions.create(
            model="chat-default", messages=[{"role": "user", "content": "fall back"}]
        )
    finally:
        _sim_a.reset()

    assert completion.model == "chat-default"
    assert completion.choices[0].message.content == "echo: fall back"
    (azure,) = _sim_b.requests()
    assert azure["path"] == "/openai/deployments/gpt-sim-prod/chat/completions"


def test_fallback_to_an_anthropic_model_under_a_routed_name_with_tools(
    live: LiveAI, key: str, _sim_a: Sim, _sim_b: Sim
) -> None:
    _sim_b.reset()
    _sim_a.fault("503", count=1, model="gpt-sim")
    try:
        completion = oai(live, key).chat.completions.create(
            model="chat-claude",
            messages=[{"role": "user", "content": "weather?"}],
            tools=[WEATHER_TOOL],
        )
    finally:
        _sim_a.reset()

    (sent,) = _sim_b.requests()
    assert sent["path"] == "/v1/messages" and sent["model"] == "claude-sim"
    assert sent["body"]["tools"][0]["input_schema"]["required"] == ["city"]
    call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert json.loads(call.function.arguments) == {"city": "sim"}  # type: ignore[union-attr]


def test_image_parts_reach_an_anthropic_provider_as_image_blocks(
    live: LiveAI, key: str, _sim_b: Sim
) -> None:
    _sim_b.reset()
    pixel = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9"
        "awAAAABJRU5ErkJggg=="
    )

    completion = oai(live, key).chat.completions.create(
        model="claude-sim",
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}},
        ]}],
    )  # fmt: skip

    (sent,) = _sim_b.requests()
    blocks = sent["body"]["messages"][0]["content"]
    assert blocks[0] == {"type": "text", "text": "what is this"}
    assert blocks[1]["source"] == {"type": "base64", "media_type": "image/png", "data": pixel}
    assert completion.choices[0].message.content == "echo: what is this"


def test_a_stream_cut_by_the_provider_ends_with_an_error_event_each_sdk_raises(
    live: LiveAI, _sim_a: Sim, _sim_b: Sim
) -> None:
    who = Account(live)
    key = who.key()
    words = {"role": "user", "content": "one two three four five six seven eight"}
    _sim_a.fault("truncated", count=1, model="gpt-sim")
    _sim_b.fault("truncated", count=1, model="claude-sim")
    try:
        received: list[str] = []
        with pytest.raises(openai.APIError) as cut:
            for chunk in oai(live, key).chat.completions.create(
                model="gpt-sim",
                messages=[words],
                stream=True,  # type: ignore[list-item]
            ):
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
        with (
            pytest.raises(anthropic.APIStatusError) as cut_claude,
            claude(live, key).messages.stream(
                model="claude-sim",
                max_tokens=64,
                messages=[words],  # type: ignore[list-item]
            ) as stream,
        ):
            for _ in stream.text_stream:
                pass
    finally:
        _sim_a.reset()
        _sim_b.reset()

    assert received and "AI_PROVIDER_ERROR" in str(cut.value.body)
    assert "AI_PROVIDER_ERROR" in str(cut_claude.value.body)
    rows = who.rows(2)
    assert [r.outcome for r in rows] == ["error", "error"]
    assert {r.surface for r in rows} == {"openai", "anthropic"}
    assert all(r.error_code == "AI_PROVIDER_ERROR" and r.output_tokens > 0 for r in rows)


# --- Anthropic SDK -----------------------------------------------------------------------


def test_anthropic_messages(live: LiveAI, key: str) -> None:
    message = claude(live, key).messages.create(
        model="claude-sim",
        max_tokens=64,
        system="be brief",
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
    )

    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: be brief hello there"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0


def test_anthropic_streaming_in_anthropics_event_order(live: LiveAI, key: str) -> None:
    client = claude(live, key)
    with client.messages.stream(
        model="claude-sim", max_tokens=64, messages=[{"role": "user", "content": "stream me"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "echo: stream me"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0

    raw = httpx.post(
        f"{live.url}/anthropic/v1/messages",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        json={"model": "gpt-sim", "max_tokens": 16, "stream": True,
              "messages": [{"role": "user", "content": "order"}]},
        timeout=10,
    )  # fmt: skip
    names = [line[7:] for line in raw.text.splitlines() if line.startswith("event: ")]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.index("content_block_start") < names.index("content_block_delta")
    assert names.index("content_block_stop") < names.index("message_delta")


def test_anthropic_tools_round_trip_through_an_openai_provider(live: LiveAI, key: str) -> None:
    client = claude(live, key)
    tool = {
        "name": "get_weather",
        "description": "Weather of a city",
        "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
    }
    messages: list[Any] = [{"role": "user", "content": "weather in Rome?"}]

    first = client.messages.create(model="gpt-sim", max_tokens=64, messages=messages, tools=[tool])
    use = next(b for b in first.content if b.type == "tool_use")
    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": use.id, "content": "rainy 12C"}]},
    ]  # fmt: skip
    second = client.messages.create(model="gpt-sim", max_tokens=64, messages=messages, tools=[tool])

    assert first.stop_reason == "tool_use"
    assert use.name == "get_weather" and use.input == {"city": "sim"}
    assert second.stop_reason == "end_turn"
    assert "rainy 12C" in second.content[0].text  # type: ignore[union-attr]


def test_anthropic_streamed_tools_and_errors(live: LiveAI, key: str) -> None:
    client = claude(live, key)
    tool = {"name": "get_weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}  # type: ignore[index]
    with client.messages.stream(
        model="claude-sim",
        max_tokens=64,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[tool],  # type: ignore[list-item]
    ) as stream:
        final = stream.get_final_message()

    assert final.stop_reason == "tool_use"
    assert final.content[-1].type == "tool_use" and final.content[-1].input == {"city": "sim"}

    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(
            model="nope", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model="claude-sim", max_tokens=8, messages=[{"role": "user", "content": "x"}],
            extra_body={"thinking": {"type": "enabled", "budget_tokens": 1024}},
        )  # fmt: skip
    with pytest.raises(anthropic.AuthenticationError):
        claude(live, "sapi_" + "y" * 40).messages.create(
            model="claude-sim", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )


# --- LangChain ---------------------------------------------------------------------------


def test_langchain_chat_openai_invoke_and_stream(live: LiveAI, key: str) -> None:
    chat = ChatOpenAI(
        model="chat-default", base_url=f"{live.url}/openai/v1", api_key=key, max_retries=0
    )  # type: ignore[call-arg]

    answer = chat.invoke("hello langchain")
    pieces = [chunk.content for chunk in chat.stream("stream langchain")]

    assert answer.content == "echo: hello langchain"
    assert "".join(str(p) for p in pieces) == "echo: stream langchain"


def test_no_5xx_of_our_own_in_the_run(live: LiveAI) -> None:
    time.sleep(0.5)
    log = live.process.log_path.read_text() if live.process.log_path else ""
    assert "Traceback" not in log
