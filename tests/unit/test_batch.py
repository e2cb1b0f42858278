"""ResultBatcher: the results of one turn of the loop go out as one request, and each
caller gets its own answer or error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flovyn_worker.batch import ResultBatcher
from flovyn_worker.errors import FlovynApiError


async def test_one_request_for_one_turn_and_an_outcome_each() -> None:
    sent: list[dict[str, Any]] = []

    async def send(payload: dict[str, Any]) -> Any:
        sent.append(payload)
        results = []
        for op in payload["operations"]:
            if op["id"] == "stale":
                body = {"error": "not the running attempt", "code": "STALE_ATTEMPT"}
                results.append({"status": 409, "body": body})
            else:
                results.append({"status": 200, "body": {"done": op["id"]}})
        return {"results": results}

    batcher = ResultBatcher(send)
    outcomes = await asyncio.gather(
        batcher.call("complete", "a", {"output": 1}),
        batcher.call("fail", "stale", {"error": "x"}),
        batcher.call("submit", "b", {"status": "SUSPENDED"}),
        return_exceptions=True,
    )
    assert len(sent) == 1
    assert [(op["type"], op["id"]) for op in sent[0]["operations"]] == [
        ("complete", "a"),
        ("fail", "stale"),
        ("submit", "b"),
    ]
    assert outcomes[0] == {"done": "a"} and outcomes[2] == {"done": "b"}
    assert isinstance(outcomes[1], FlovynApiError)
    assert (outcomes[1].status, outcomes[1].code) == (409, "STALE_ATTEMPT")


@pytest.mark.parametrize("answer", [RuntimeError("connection reset"), {"results": []}])
async def test_a_failed_request_fails_each_operation(answer: Any) -> None:
    async def send(payload: dict[str, Any]) -> Any:
        if isinstance(answer, Exception):
            raise answer
        return answer

    batcher = ResultBatcher(send)
    outcomes = await asyncio.gather(
        batcher.call("complete", "a", {}), batcher.call("complete", "b", {}),
        return_exceptions=True,
    )  # fmt: skip
    assert all(isinstance(o, Exception) for o in outcomes), outcomes
    # The batcher is not stuck: the next result goes out.
    answer = {"results": [{"status": 200, "body": {}}]}
    assert await batcher.call("complete", "c", {}) == {}
