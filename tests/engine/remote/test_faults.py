"""The remote engine against upstreams that fail: a fake OpenAI-compatible upstream on
loopback (tests/support/fake_upstream.py) injects each fault. Every fault is reported (an
error before the response, or ``Finished(ERROR)`` in-band) and later requests succeed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gemserve.engine import (
    FinishReason,
    TextDelta,
    ToolCallArguments,
    ToolCallEnd,
    ToolCallStart,
    ToolSpec,
    ToolUse,
)
from gemserve.engine.remote import RemoteEngine
from gemserve.errors import InvalidArgument, ResourceExhausted, Unavailable
from tests.support.fake_upstream import FakeUpstream
from tests.support.remote import ask, drain, remote_engine, text_of


@pytest.fixture
async def fakes() -> AsyncIterator[list[FakeUpstream]]:
    upstreams = [await FakeUpstream().start(), await FakeUpstream().start()]
    yield upstreams
    for upstream in upstreams:
        await upstream.stop()


async def started(engine: RemoteEngine) -> RemoteEngine:
    await engine.start()
    return engine


async def test_answers_and_discovers(fakes: list[FakeUpstream]) -> None:
    engine = await started(remote_engine([fakes[0].url]))
    try:
        events, finished = await drain(await engine.generate(ask()))
        assert text_of(events) == "Hello world"
        assert finished.reason is FinishReason.STOP
        assert (finished.prompt_tokens, finished.output_tokens) == (7, 2)
        sent = fakes[0].requests[0]
        assert sent["model"] == "fake-model"  # discovered from /v1/models
        assert sent["stream"] is True
        assert sent["stream_options"] == {"include_usage": True}
        assert sent["messages"] == [{"role": "user", "content": "Say hello."}]
        assert engine.pool.upstreams[0].kind == "openai"
    finally:
        await engine.close()


async def test_503_backs_off_and_the_other_upstream_answers(fakes: list[FakeUpstream]) -> None:
    fakes[0].queue(["503"])
    engine = await started(remote_engine([f.url for f in fakes]))
    try:
        events, _ = await drain(await engine.generate(ask()))
        assert text_of(events) == "Hello world"
        assert (fakes[0].chats, fakes[1].chats) == (1, 1)
        first = engine.pool.upstreams[0]
        assert first.healthy  # busy, not broken
        assert first.saturations == 1
        # While it backs off, everything goes to the other one.
        await drain(await engine.generate(ask()))
        assert (fakes[0].chats, fakes[1].chats) == (1, 2)
    finally:
        await engine.close()


async def test_every_upstream_saturated_is_a_429_with_retry_after(
    fakes: list[FakeUpstream],
) -> None:
    fakes[0].queue(["503"])
    fakes[1].queue(["429"])
    engine = await started(remote_engine([f.url for f in fakes], timeouts={"backoff": 2.0}))
    try:
        with pytest.raises(ResourceExhausted) as caught:
            await engine.generate(ask())
        assert caught.value.retry_after in (1, 2)
        # Within the backoff, refused at once without asking the upstreams.
        with pytest.raises(ResourceExhausted):
            await engine.generate(ask())
        assert (fakes[0].chats, fakes[1].chats) == (1, 1)
        await asyncio.sleep(2.1)
        events, _ = await drain(await engine.generate(ask()))
        assert text_of(events) == "Hello world"
    finally:
        await engine.close()


async def test_a_hanging_upstream_times_out(fakes: list[FakeUpstream]) -> None:
    fakes[0].queue(["hang"])
    engine = await started(remote_engine([fakes[0].url], timeouts={"first_token": 0.5}))
    try:
        with pytest.raises(Unavailable, match=r"no answer within 0\.5 s"):
            await engine.generate(ask())
        assert not engine.pool.upstreams[0].healthy
        # With every upstream ejected the pool still tries (panic mode); the health check
        # re-admits it soon anyway.
        events, finished = await drain(await engine.generate(ask()))
        assert text_of(events) == "Hello world"
        assert finished.reason is FinishReason.STOP
        await asyncio.sleep(0.5)
        assert engine.pool.upstreams[0].healthy
    finally:
        await engine.close()


async def test_a_hang_mid_stream_ends_in_band(fakes: list[FakeUpstream]) -> None:
    fakes[0].queue(["hang_mid"])
    engine = await started(remote_engine([fakes[0].url], timeouts={"idle": 0.5}))
    try:
        events, finished = await drain(await engine.generate(ask()))
        assert text_of(events) == "Hello"
        assert finished.reason is FinishReason.ERROR
        assert finished.error is not None
        assert "idle timeout" in finished.error
        events, finished = await drain(await engine.generate(ask()))
        assert (text_of(events), finished.reason) == ("Hello world", FinishReason.STOP)
    finally:
        await engine.close()


async def test_malformed_sse_ends_in_band(fakes: list[FakeUpstream]) -> None:
    fakes[0].queue(["malformed"])
    engine = await started(remote_engine([fakes[0].url]))
    try:
        events, finished = await drain(await engine.generate(ask()))
        assert text_of(events) == "Hello"
        assert finished.reason is FinishReason.ERROR
        assert "malformed SSE" in (finished.error or "")
        events, finished = await drain(await engine.generate(ask()))
        assert (text_of(events), finished.reason) == ("Hello world", FinishReason.STOP)
    finally:
        await engine.close()


async def test_a_stream_cut_without_done_is_an_error(fakes: list[FakeUpstream]) -> None:
    fakes[0].queue(["truncated"])
    engine = await started(remote_engine([fakes[0].url]))
    try:
        _, finished = await drain(await engine.generate(ask()))
        assert finished.reason is FinishReason.ERROR
        assert "before the answer was complete" in (finished.error or "")
    finally:
        await engine.close()


async def test_killed_mid_stream_then_routed_around(fakes: list[FakeUpstream]) -> None:
    """Two upstreams, the first dies mid-answer: the answer fails in-band, and the next
    requests all go to the live one."""
    engine = await started(remote_engine([f.url for f in fakes]))
    fakes[0].queue(["die_mid"])
    try:
        events, finished = await drain(await engine.generate(ask()))
        assert fakes[0].chats == 1
        assert text_of(events) == "Hello"
        assert finished.reason is FinishReason.ERROR
        assert "The model's upstream failed" in (finished.error or "")
        assert not engine.pool.upstreams[0].healthy
        for _ in range(4):
            events, finished = await drain(await engine.generate(ask()))
            assert (text_of(events), finished.reason) == ("Hello world", FinishReason.STOP)
        assert fakes[1].chats == 4
        # It comes back on the same port: the health check re-admits it.
        await fakes[0].start(fakes[0].port)
        await asyncio.sleep(0.6)
        assert engine.pool.upstreams[0].healthy
    finally:
        await engine.close()


async def test_a_failure_before_the_first_token_is_retried_elsewhere(
    fakes: list[FakeUpstream],
) -> None:
    fakes[0].queue(["die_early"])
    fakes[1].queue(["500"])
    fakes[1].default = "ok"
    engine = await started(remote_engine([f.url for f in fakes]))
    try:
        # Upstream 0 resets before any token: the request starts over on upstream 1, whose
        # 500 ejects it too; with both ejected, the pool tries them anyway (panic mode).
        events, finished = await drain(await engine.generate(ask()))
        assert (events, finished.reason) == ([], FinishReason.ERROR)
        assert "No upstream of model 'pool' could take the request" in (finished.error or "")
        events, finished = await drain(await engine.generate(ask()))
        assert (text_of(events), finished.reason) == ("Hello world", FinishReason.STOP)
    finally:
        await engine.close()


async def test_a_reset_before_the_first_token_is_invisible(fakes: list[FakeUpstream]) -> None:
    fakes[0].queue(["die_early"])
    engine = await started(remote_engine([f.url for f in fakes]))
    try:
        events, finished = await drain(await engine.generate(ask()))
        assert (text_of(events), finished.reason) == ("Hello world", FinishReason.STOP)
        assert (fakes[0].chats, fakes[1].chats) == (1, 1)
        assert engine.stats().extra["retries_before_first_token"] == 1
    finally:
        await engine.close()


async def test_cancel_closes_the_upstream_request(fakes: list[FakeUpstream]) -> None:
    fakes[0].delay = 5.0
    engine = await started(remote_engine([fakes[0].url]))
    try:
        stream = await engine.generate(ask())
        seen = []
        async for event in stream:
            seen.append(event)
            if isinstance(event, TextDelta):
                stream.cancel()
        assert seen[-1].reason is FinishReason.CANCELLED  # type: ignore[union-attr]
        await stream.wait_closed()
        for _ in range(40):
            if fakes[0].disconnects:
                break
            await asyncio.sleep(0.05)
        assert fakes[0].disconnects == 1  # the upstream saw the connection close
        assert engine.stats().active == 0
        assert engine.stats().requests_cancelled == 1
    finally:
        await engine.close()


async def test_cap_and_least_in_flight(fakes: list[FakeUpstream]) -> None:
    for fake in fakes:
        fake.delay = 0.5
    engine = await started(remote_engine([f.url for f in fakes], cap=1))
    try:
        first = await engine.generate(ask())
        second = await engine.generate(ask())
        assert (fakes[0].chats, fakes[1].chats) == (1, 1)
        with pytest.raises(ResourceExhausted, match="busy"):
            await engine.generate(ask())
        await drain(first)
        await drain(second)
        assert engine.stats().active == 0
    finally:
        await engine.close()


async def test_affinity_prefers_the_last_upstream(fakes: list[FakeUpstream]) -> None:
    engine = await started(remote_engine([f.url for f in fakes]))
    try:
        for _ in range(3):
            await drain(await engine.generate(ask(affinity="conversation-a")))
        assert sorted((fakes[0].chats, fakes[1].chats)) == [0, 3]
        for i in range(6):
            await drain(await engine.generate(ask(affinity=f"new-{i}")))
        # New conversations spread: the idle pool breaks ties by requests so far.
        assert abs(fakes[0].chats - fakes[1].chats) <= 3
    finally:
        await engine.close()


async def test_no_upstream_reachable_is_unavailable() -> None:
    dead = await FakeUpstream().start()
    await dead.stop()
    engine = await started(remote_engine([dead.url]))
    try:
        with pytest.raises(Unavailable, match="No upstream"):
            await engine.generate(ask())
    finally:
        await engine.close()


async def test_a_streamed_tool_call_arrives_as_events(fakes: list[FakeUpstream]) -> None:
    fakes[0].queue(["tool_call"])
    engine = await started(remote_engine([fakes[0].url]))
    tools = ToolUse((ToolSpec("get_weather", "", '{"type": "object"}'),), mode="any")
    try:
        events, finished = await drain(await engine.generate(ask(tools=tools)))
        assert events == [
            ToolCallStart(0, "get_weather"),
            ToolCallArguments(0, '{"city'),
            ToolCallArguments(0, '": "Par'),
            ToolCallArguments(0, 'is"}'),
            ToolCallEnd(0, "get_weather", '{"city":"Paris"}'),
        ]
        assert finished.reason is FinishReason.STOP
        sent = fakes[0].requests[0]
        assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    finally:
        await engine.close()


async def test_a_connection_closed_before_the_answer_is_sent_again(
    fakes: list[FakeUpstream],
) -> None:
    """An upstream closing a connection without answering (as llama-server closes an idle
    kept-alive one, racing the next request) gets the request once more, and stays in."""
    fakes[0].queue(["drop"])
    engine = await started(remote_engine([fakes[0].url]))
    try:
        events, finished = await drain(await engine.generate(ask()))
        assert (text_of(events), finished.reason) == ("Hello world", FinishReason.STOP)
        assert fakes[0].chats == 2
        assert engine.pool.upstreams[0].healthy
    finally:
        await engine.close()


async def test_done_without_a_finish_reason_is_an_error(fakes: list[FakeUpstream]) -> None:
    """An answer cut short but closed with [DONE] (llama-cpp-python's server does so when
    another request arrives, with its default ``interrupt_requests``) is not complete."""
    fakes[0].queue(["interrupted"])
    engine = await started(remote_engine([fakes[0].url]))
    try:
        events, finished = await drain(await engine.generate(ask()))
        assert text_of(events) == "Hello"
        assert finished.reason is FinishReason.ERROR
        assert "without a finish reason" in (finished.error or "")
    finally:
        await engine.close()


async def test_counts_without_an_upstream_count_are_flagged_estimates(
    fakes: list[FakeUpstream],
) -> None:
    """An upstream with no tokenizer endpoint (kind ``openai``) and a stream without usage:
    countTokens and the answer's usage are gemserve's estimates, and say so; the upstream's
    own usage is not."""
    fakes[0].queue(["no_usage"])
    engine = await started(remote_engine([fakes[0].url]))
    try:
        request = ask("Say hello to the whole wide world.")
        counted = await engine.count_prompt(request)
        assert counted.estimated
        assert counted.tokens > 0
        _, finished = await drain(await engine.generate(request))
        assert finished.estimated
        assert finished.prompt_tokens == counted.tokens  # the same estimate
        assert finished.output_tokens == 2  # a chunk a token
        _, exact = await drain(await engine.generate(request))
        assert not exact.estimated
        assert (exact.prompt_tokens, exact.output_tokens) == (7, 2)
    finally:
        await engine.close()


async def test_a_client_error_as_the_first_data_is_a_400_neither_retried_nor_ejected(
    fakes: list[FakeUpstream],
) -> None:
    """An upstream that says the prompt is over its context inside its stream, before any
    token (as vLLM and llama-server write error objects): a 400 from ``generate``, before any
    event; the other upstream is not asked (it would refuse too) and the first stays in."""
    fakes[0].queue(["refuse_first"])
    engine = await started(remote_engine([f.url for f in fakes]))
    try:
        with pytest.raises(InvalidArgument) as caught:
            await engine.generate(ask())
        assert caught.value.message == (
            "The input is 5000 tokens long, but model 'pool' has a context of 4096 tokens "
            "(prompt and output together)."
        )
        assert (fakes[0].chats, fakes[1].chats) == (1, 0)
        assert all(u.healthy for u in engine.pool.upstreams)
        assert engine.stats().active == 0
    finally:
        await engine.close()


async def test_a_server_error_as_the_first_data_is_retried_elsewhere(
    fakes: list[FakeUpstream],
) -> None:
    fakes[0].queue(["fail_first"])
    engine = await started(remote_engine([f.url for f in fakes]))
    try:
        events, finished = await drain(await engine.generate(ask()))
        assert (text_of(events), finished.reason) == ("Hello world", FinishReason.STOP)
        assert (fakes[0].chats, fakes[1].chats) == (1, 1)
        assert not engine.pool.upstreams[0].healthy
    finally:
        await engine.close()


async def test_a_client_error_after_the_first_token_ends_in_band_without_a_retry(
    fakes: list[FakeUpstream],
) -> None:
    """Once tokens went out the error can only end the answer; as the request's fault it
    neither ejects the upstream nor is tried again elsewhere."""
    fakes[0].queue(["refuse_mid"])
    engine = await started(remote_engine([f.url for f in fakes]))
    try:
        events, finished = await drain(await engine.generate(ask()))
        assert text_of(events) == "Hello"
        assert finished.reason is FinishReason.ERROR
        assert "has a context of 4096 tokens" in (finished.error or "")
        assert (fakes[0].chats, fakes[1].chats) == (1, 0)
        assert all(u.healthy for u in engine.pool.upstreams)
    finally:
        await engine.close()
