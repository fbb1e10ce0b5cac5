"""The fake Messages API answers the real anthropic SDK as the API does."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tests.fakes.anthropic_api import FakeAnthropic


def client(api: FakeAnthropic, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key or api.api_key, base_url=api.url, max_retries=0)


def create(api: FakeAnthropic, messages: list[Any] | None = None, key: str | None = None):
    return client(api, key).messages.create(
        model="claude-sonnet-4-6",
        max_tokens=64,
        messages=messages or [{"role": "user", "content": "hi"}],
    )


def test_text_reply_and_recorded_request(anthropic_api: FakeAnthropic) -> None:
    anthropic_api.reply_text("hello", input_tokens=12, output_tokens=3)

    message = create(anthropic_api)

    assert message.content[0].type == "text"
    assert message.content[0].text == "hello"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 3)
    assert message.model == "claude-sonnet-4-6"
    sent = anthropic_api.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {anthropic_api.api_key}"
    assert "anthropic-version" in sent.headers
    assert sent.json()["messages"] == [{"role": "user", "content": "hi"}]


def test_tool_use_then_tool_result(anthropic_api: FakeAnthropic) -> None:
    anthropic_api.reply_tool_use(("read_file", {"path": "a.txt"}), text="Let me look.")
    anthropic_api.reply_text("done")

    first = create(anthropic_api)
    call = first.content[1]
    assert first.stop_reason == "tool_use"
    assert (call.type, call.name, call.input) == ("tool_use", "read_file", {"path": "a.txt"})
    history = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "text of a"}],
        },
    ]
    assert create(anthropic_api, history).content[0].text == "done"
    assert (
        anthropic_api.message_requests()[1]["messages"][2]["content"][0]["tool_use_id"] == call.id
    )


def test_missing_tool_result_is_a_400(anthropic_api: FakeAnthropic) -> None:
    anthropic_api.reply_text("never sent")
    history = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "x", "input": {}}],
        },
        {"role": "user", "content": "where is my result?"},
    ]
    with pytest.raises(anthropic.BadRequestError, match="tool_result"):
        create(anthropic_api, history)
    assert anthropic_api.pending == 1


def test_rate_limit_has_retry_after_and_error_body(anthropic_api: FakeAnthropic) -> None:
    anthropic_api.rate_limited(retry_after="17")
    with pytest.raises(anthropic.RateLimitError) as caught:
        create(anthropic_api)
    assert caught.value.response.headers["retry-after"] == "17"
    body: Any = caught.value.body
    assert body["error"]["type"] == "rate_limit_error"
    assert body["type"] == "error"


def test_overloaded_is_529(anthropic_api: FakeAnthropic) -> None:
    anthropic_api.overloaded()
    with pytest.raises(anthropic.OverloadedError) as caught:
        create(anthropic_api)
    assert caught.value.status_code == 529


def test_malformed_body_fails_json_decoding(anthropic_api: FakeAnthropic) -> None:
    anthropic_api.malformed()
    with pytest.raises(ValueError):
        create(anthropic_api)


def test_wrong_key_is_401_and_keeps_the_script(anthropic_api: FakeAnthropic) -> None:
    anthropic_api.reply_text("for the right key")
    with pytest.raises(anthropic.AuthenticationError):
        create(anthropic_api, key="sk-ant-wrong")
    assert anthropic_api.pending == 1
    anthropic_api.unauthorized()
    assert create(anthropic_api).content[0].text == "for the right key"
    with pytest.raises(anthropic.AuthenticationError):
        create(anthropic_api)


def test_empty_script_is_a_server_error(anthropic_api: FakeAnthropic) -> None:
    with pytest.raises(anthropic.InternalServerError, match="no scripted response"):
        create(anthropic_api)


def test_streamed_reply_parses_with_the_sdk_stream_helper(anthropic_api: FakeAnthropic) -> None:
    anthropic_api.reply_tool_use(
        ("write_file", {"path": "a.txt", "content": "a long enough text to take pieces"}),
        text="Writing it now.",
        input_tokens=40,
        output_tokens=12,
    )

    with client(anthropic_api).messages.stream(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        texts = list(stream.text_stream)
        message = stream.get_final_message()

    assert "".join(texts) == "Writing it now."
    assert message.stop_reason == "tool_use"
    call = message.content[1]
    assert call.type == "tool_use"
    assert (call.name, call.input) == (
        "write_file",
        {"path": "a.txt", "content": "a long enough text to take pieces"},
    )
    assert (message.usage.input_tokens, message.usage.output_tokens) == (40, 12)
    assert anthropic_api.message_requests()[0]["stream"] is True


def test_streamed_events_in_the_api_order(anthropic_api: FakeAnthropic) -> None:
    anthropic_api.reply_text("hello there", input_tokens=7, output_tokens=3)

    events = list(
        client(anthropic_api).messages.create(
            model="claude-sonnet-4-6",
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
    )

    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and start.message.usage.input_tokens == 7
    assert delta.type == "message_delta" and delta.usage.output_tokens == 3
    assert delta.delta.stop_reason == "end_turn"
