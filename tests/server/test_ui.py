"""The chat page's pieces: escaping, history, the Sources block, feedback, the generator switch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.components.chatbot import NormalizedMessageContent, TextMessage

from assistant.server.ui import (
    FeedbackLog,
    answer_messages,
    escape_html,
    escape_markdown,
    make_ui,
    safe_chatbot,
    sources_markdown,
    to_history,
    unescape_html,
)
from assistant.settings import Settings
from assistant.types import Answer, Citation, Message

from .fakes import FakeAssistant

HOSTILE = "<script>alert(1)</script> &lt; [x](javascript:alert(1)) **b**"


def _text(part: object) -> str:
    """The text of a postprocessed message part (a TextMessage)."""
    assert isinstance(part, TextMessage), part
    return part.text


def _dict_text(part: NormalizedMessageContent) -> str:
    """The text of a preprocessed message part (a text dict)."""
    assert part["type"] == "text", part
    return part["text"]


def test_escape_round_trip() -> None:
    for text in (HOSTILE, "a & b < c", "&amp;lt;", ""):
        assert unescape_html(escape_html(text)) == text
    assert "<" not in escape_html(HOSTILE)


def test_safe_chatbot_escapes_on_the_way_out_and_back() -> None:
    bot = safe_chatbot()
    out = bot.postprocess([{"role": "user", "content": HOSTILE},
                           {"role": "assistant", "content": "ok <b>x</b>"}])
    texts = [_text(m.content[0]) for m in out.root]
    assert texts == [escape_html(HOSTILE), "ok &lt;b>x&lt;/b>"]
    back = bot.preprocess(out)
    assert [_dict_text(m["content"][0]) for m in back] == [HOSTILE, "ok <b>x</b>"]
    assert bot.sanitize_html is True and bot.get_block_name() == "chatbot"


def test_history_leaves_out_sources_blocks() -> None:
    history: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "q1"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a1 [1]"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "**[1]** ..."}],
         "metadata": {"title": "Sources"}},
        {"role": "user", "content": "q2"},
    ]
    assert to_history(history) == [Message("user", "q1"), Message("assistant", "a1 [1]"),
                                   Message("user", "q2")]


def test_sources_block_quotes_documents_inertly() -> None:
    answer = Answer("It is [1].", False, [Citation(1, "d.md", "Doc *T*", "A › B",
                                                   "Line [x](javascript:y)\n# not a heading")])
    md = sources_markdown(answer)
    assert "**[1] Doc \\*T\\*** — A › B" in md
    assert "> Line \\[x\\]\\(javascript:y\\)" in md and "> \\# not a heading" in md
    assert md.startswith("*Quoted from the documents")  # the grounding label comes first
    msgs = answer_messages(answer)
    assert msgs[0].content == "It is [1]." and msgs[1].metadata == {"title": "Sources",
                                                                     "status": "done"}
    refused = Answer("I couldn't find this in the documents.", True,
                     suggestions=["Digital risks › Port security (x.md)"])
    msgs = answer_messages(refused)
    assert msgs[1].metadata["title"] == "Closest sections"
    assert escape_markdown("a_b") == "a\\_b"


def test_feedback_log_appends_jsonl(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "feedback.jsonl")
    history: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "This [1]."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "**[1]** q"}],
         "metadata": {"title": "Sources"}},
    ]
    log.record(history, 1, True)
    log.record(history, [1, 0], False)
    lines = [json.loads(x) for x in (tmp_path / "feedback.jsonl").read_text().splitlines()]
    assert [x["rating"] for x in lines] == ["like", "dislike"]
    assert lines[0]["question"] == "What is it?" and lines[0]["answer"] == "This [1]."
    assert lines[0]["sources"] == "**[1]** q"


def _dropdowns(page: gr.Blocks) -> list[gr.Dropdown]:
    return [b for b in page.blocks.values() if isinstance(b, gr.Dropdown)]


def test_generator_switch_only_with_several_generators(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    one = make_ui(FakeAssistant(settings), settings)
    assert _dropdowns(one) == []
    two = make_ui(FakeAssistant(settings, generators=["extractive", "local"]), settings)
    (dropdown,) = _dropdowns(two)
    assert dropdown.value == "extractive"
    assert [c[1] for c in dropdown.choices] == ["extractive", "local"]


def test_generator_switch_reaches_the_assistant(tmp_path: Path) -> None:
    """The page's /chat endpoint passes the dropdown's choice to the assistant."""
    import threading
    import time

    import uvicorn
    from gradio_client import Client

    from assistant.server.app import make_app

    from .conftest import free_port

    settings = Settings(data_dir=tmp_path)
    fake = FakeAssistant(settings, generators=["extractive", "local"])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(fake, settings), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.05)
        result = Client(f"http://127.0.0.1:{port}", verbose=False).predict(
            "Which one?", "local", api_name="/chat")
        assert fake.calls[-1] == ("Which one?", [], "local")
        assert "The answer is here [1]." in json.dumps(result)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
