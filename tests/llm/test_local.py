"""The in-process llama.cpp model (LocalLlama) against the real packaged model.

One LocalLlama is loaded for the whole module; queue tests change its max_queue temporarily.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.llm import ChatModel, LLMBusy, LLMError, LocalLlama

USER_OK = [{"role": "user", "content": "Reply with the word OK."}]
COUNT = [
    {"role": "user", "content": "Count from 1 to 20, separated by commas. Output only the numbers."}
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llm(model_path: Path) -> Iterator[LocalLlama]:
    m = LocalLlama(model_path, n_ctx=2048, n_threads=2, max_queue=2)
    m.load()
    yield m
    m.close()


def _timed(it: Iterator[str]) -> list[tuple[float, str]]:
    return [(time.perf_counter(), d) for d in it]


def test_reply_ok_streams_chatml_answer(llm: LocalLlama) -> None:
    assert isinstance(llm, ChatModel)
    assert llm.name == "local:qwen2.5-coder-1.5b-instruct-q4_k_m"
    text = "".join(llm.stream(USER_OK, max_tokens=16))
    assert "OK" in text.upper()
    assert "<|im_end|>" not in text and "<|im_start|>" not in text
    assert llm.last_usage is not None
    assert 20 < llm.last_usage["prompt_tokens"] < 60  # ChatML wrapping + default system prompt
    assert 1 <= llm.last_usage["completion_tokens"] <= 16


def test_deltas_arrive_incrementally(llm: LocalLlama) -> None:
    start = time.perf_counter()
    got = _timed(llm.stream(COUNT, max_tokens=48))
    texts = [d for _, d in got]
    assert len(texts) >= 10, texts
    assert all(texts)
    assert "1" in texts[0] or "1" in "".join(texts[:2])
    # tokens are yielded as generated, not all at the end: the first arrives well before the last
    first, last = got[0][0] - start, got[-1][0] - start
    assert last - first > 0.3, (first, last)
    assert llm.last_usage and llm.last_usage["completion_tokens"] >= len(texts) - 1


def test_complete_joins_stream_and_honours_stop(llm: LocalLlama) -> None:
    text = llm.complete(COUNT, max_tokens=48, stop=["5"])
    assert "5" not in text and "4" in text


def test_busy_when_queue_full(llm: LocalLlama) -> None:
    llm.max_queue = 0
    started = threading.Event()
    result: dict[str, object] = {}

    def long_call() -> None:
        try:
            chunks = []
            for d in llm.stream(COUNT, max_tokens=40):
                started.set()
                chunks.append(d)
            result["text"] = "".join(chunks)
        except Exception as e:  # pragma: no cover - reported below
            result["error"] = e
        finally:
            started.set()

    t = threading.Thread(target=long_call)
    t.start()
    try:
        assert started.wait(60)
        t0 = time.perf_counter()
        with pytest.raises(LLMBusy, match="busy"):
            llm.complete(USER_OK, max_tokens=4)
        assert time.perf_counter() - t0 < 0.5  # refused at once, not after waiting
    finally:
        t.join(120)
        llm.max_queue = 2
    assert "error" not in result, result
    assert "10" in str(result["text"])


def test_waiting_caller_is_served_and_third_is_refused(llm: LocalLlama) -> None:
    llm.max_queue = 1
    gate = threading.Event()
    results: dict[str, object] = {}

    def call(key: str, messages: list[dict[str, str]], n: int) -> None:
        try:
            it = llm.stream(messages, max_tokens=n)
            out = []
            for d in it:
                gate.set()
                out.append(d)
            results[key] = "".join(out)
        except Exception as e:
            results[key] = e

    first = threading.Thread(target=call, args=("first", COUNT, 30))
    first.start()
    try:
        assert gate.wait(60)
        second = threading.Thread(target=call, args=("second", USER_OK, 8))
        second.start()
        deadline = time.monotonic() + 5
        while llm.waiting == 0 and time.monotonic() < deadline:  # second is now queued
            time.sleep(0.01)
        assert llm.waiting == 1
        with pytest.raises(LLMBusy):
            llm.complete(USER_OK, max_tokens=4)
        second.join(120)
    finally:
        first.join(120)
        llm.max_queue = 2
    assert isinstance(results["first"], str) and isinstance(results["second"], str), results
    assert "OK" in str(results["second"]).upper()


def test_timeout_raises_and_model_recovers(llm: LocalLlama) -> None:
    t0 = time.perf_counter()
    with pytest.raises(LLMError, match="timed out"):
        llm.complete(COUNT, max_tokens=200, timeout_s=0.05)
    assert time.perf_counter() - t0 < 1.0  # reported promptly, not after the generation
    # the aborted generation stops at its next token and frees the slot for the next caller
    t0 = time.perf_counter()
    assert "OK" in llm.complete(USER_OK, max_tokens=8, timeout_s=60).upper()
    assert time.perf_counter() - t0 < 30


def test_timeout_mid_stream(llm: LocalLlama) -> None:
    # Size the deadline from a measured first-token time (the prompt is cached by now), so
    # the test holds on a busy machine too: some tokens arrive, then the deadline cuts it off.
    t0 = time.perf_counter()
    probe = llm.stream(COUNT, max_tokens=2)
    next(probe)
    first_token_s = time.perf_counter() - t0
    probe.close()
    got: list[str] = []
    with pytest.raises(LLMError, match="timed out"):
        for d in llm.stream(COUNT, max_tokens=200, timeout_s=3 * first_token_s + 1.0):
            got.append(d)
    assert 0 < len(got) < 200
    assert "OK" in llm.complete(USER_OK, max_tokens=8).upper()


def test_closing_generator_early_stops_generation(llm: LocalLlama) -> None:
    it = llm.stream(COUNT, max_tokens=200)
    next(it)
    t0 = time.perf_counter()
    it.close()  # e.g. the web client went away
    # llama.cpp stops at its next token (~0.06 s on an idle machine) and frees the slot; had
    # the 200-token generation gone on, the slot would stay taken for 10 s or more
    while llm.busy and time.perf_counter() - t0 < 30:
        time.sleep(0.01)
    assert time.perf_counter() - t0 < 6
    assert "OK" in llm.complete(USER_OK, max_tokens=8).upper()


def test_context_overflow_is_a_clear_error(llm: LocalLlama) -> None:
    huge = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(LLMError, match="context"):
        llm.complete(huge, max_tokens=4)


def test_yes_probability_reads_the_models_verdict(llm: LocalLlama) -> None:
    from assistant.answerers.generative import VERIFY_PROMPT

    def check(sentence: str, question: str, answer: str) -> float:
        return llm.yes_probability([
            {"role": "system", "content": VERIFY_PROMPT},
            {"role": "user", "content": f"Sentences:\n- {sentence}\nQuestion: {question}\n"
                                        f"Answer: {answer}\nDo the sentences state what the "
                                        "question asks for? Reply yes or no."}])

    stated = check("The bridge over the Lune was opened in 1887 by the mayor of Caton.",
                   "When was the bridge over the Lune opened?",
                   "It was opened in 1887.")
    unrelated = check("The bridge over the Lune is painted green every ten years.",
                      "How much did the bridge over the Lune cost to build?",
                      "The bridge is painted green every ten years.")
    assert 0.0 <= unrelated < stated <= 1.0
    assert stated > 0.5


def test_the_evidence_choice_reports_how_near_the_model_came_to_none(llm: LocalLlama) -> None:
    from assistant.answerers.generative import SYSTEM_PROMPT, doubt, grammar

    def ask(question: str) -> tuple[str, float | None]:
        probs: list[dict[str, object]] = []
        reply = "".join(llm.stream(
            [{"role": "system", "content": SYSTEM_PROMPT},
             {"role": "user", "content": "[1] The bridge over the Lune was opened in 1887 by "
                                         "the mayor of Caton.\n[2] It is painted green every "
                                         f"ten years.\nQuestion: {question}"}],
            max_tokens=40, grammar=grammar(2), token_probs=probs))
        assert probs and all("token" in p for p in probs)
        return reply, doubt(probs)

    stated, sure = ask("When was the bridge over the Lune opened?")
    assert stated.startswith("Evidence: 1") and sure is not None
    _, unsure = ask("How much did the bridge over the Lune cost to build?")
    assert unsure is not None and 0.0 <= sure < unsure <= 1.0
    # a plain call after ones that asked for probabilities still answers
    assert llm.complete(USER_OK, max_tokens=4)


def _logprobs(llm: LocalLlama, messages: list[dict[str, str]]) -> list[tuple[str, float]]:
    probs: list[dict[str, Any]] = []
    "".join(llm.stream(messages, max_tokens=12, token_probs=probs))
    return [(str(p["token"]), float(p["logprob"])) for p in probs]


def test_the_same_prompt_gets_the_same_answer_whatever_came_before(llm: LocalLlama) -> None:
    # llama.cpp reuses what its cache shares with a new prompt; computed in another batch
    # split, the numbers differ in their last digits. Asked again right after a prompt that
    # shares all but its last words, the prompt would be computed from its last token only.
    system = {"role": "system", "content": "You answer in one short sentence. " * 20}
    shared = "The bridge over the Lune was opened in 1887 by the mayor of Caton. " * 6
    first = [system, {"role": "user", "content": shared + "When was the bridge opened?"}]
    other = [system, {"role": "user", "content": shared + "Who opened the bridge?"}]
    before = _logprobs(llm, first)
    _logprobs(llm, other)
    assert _logprobs(llm, first) == before  # exactly: every digit of every probability
    _logprobs(llm, [{"role": "system", "content": "Reply in French."}, *USER_OK])
    assert _logprobs(llm, first) == before


def test_saved_prompt_states_are_bounded_and_their_failure_is_not_fatal(
    llm: LocalLlama, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from assistant.llm import local

    monkeypatch.setattr(local, "CHECKPOINTS_KEPT", 2)
    for n in range(4):
        llm.complete([{"role": "system", "content": f"Rule {n}: be brief."}, *USER_OK],
                     max_tokens=2)
    assert llm._sock_dir is not None
    assert len(list(Path(llm._sock_dir).glob("*.bin"))) == 2
    assert len(llm._checkpoints) == 2

    def broken(action: str, filename: str = "") -> None:
        raise LLMError("slot actions are unavailable")

    monkeypatch.setattr(llm, "_slot_action", broken)
    with caplog.at_level("WARNING", logger="assistant.llm.local"):
        reply = llm.complete([{"role": "system", "content": "Rule 9: be brief."}, *USER_OK],
                             max_tokens=8)
    assert "OK" in reply.upper()
    assert "slot actions are unavailable" in caplog.text
