"""The Gradio chat page: a gr.ChatInterface (messages format) over the same `Assistant`.

Streamed answers; under each answer a collapsible "Sources" message (metadata title) with the
numbered citations; like/dislike appended to <data_dir>/feedback.jsonl; retry, undo and clear
come with ChatInterface; a generator dropdown when more than one generator is available.

Nothing from a question or a document runs as HTML: `safe_chatbot` turns every `<` into a
character reference before the browser sees it (and back when the value returns), so markup
shows as the literal text it is; Gradio's own sanitizer stays on behind it.

`?collection=NAME` in the page's URL answers from that collection (Gradio sends the page's
query string with every call); an invalid or unknown name is an error, never another
collection's answer. With an admin key set, a "Documents" tab (static/documents.*) manages the
documents through /api/documents; the operator types the key into the tab, and the server
checks it on every action. Without an admin key the page has no tabs.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gradio as gr
from starlette.datastructures import Headers

from ..catalog import DEFAULT, CollectionError, valid_name
from ..core import BusyError, Delta, Final, InputError
from ..types import GROUNDING, Answer, Message
from .api import BUSY_MESSAGE, BUSY_RETRY_AFTER_S, AssistantLike, _is_busy
from .app import GRADIO_ERROR, widget_source
from .origins import CollectionOrigins, OriginPolicy

log = logging.getLogger(__name__)

TITLE = "Cyber Diplomacy Assistant"
EXAMPLES = [
    "How much did the NotPetya attack cost Maersk?",
    "Which countries does the YAKSHA project cover?",
    "What is the EU Cyber Diplomacy Toolbox?",
    "What does the NIS Directive require?",
]
SOURCES_TITLE = "Sources"
SUGGESTIONS_TITLE = "Closest sections"


# -- escaping ----------------------------------------------------------------------------------
def escape_html(text: str) -> str:
    """Make markup inert but still visible: '<b>' is shown as '<b>', never parsed."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def unescape_html(text: str) -> str:
    return text.replace("&lt;", "<").replace("&amp;", "&")


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>$])")


def escape_markdown(text: str) -> str:
    """Quoted document text is shown as written: no links, emphasis or headings from it."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def _map_text(messages: list[Any], fn: Any) -> None:
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else getattr(m, "content", None)
        parts: list[Any] = content if isinstance(content, list) else [content]
        for part in parts:
            if isinstance(part, dict) and part.get("type") == "text":
                part["text"] = fn(part.get("text") or "")
            elif getattr(part, "type", None) == "text" and hasattr(part, "text"):
                part.text = fn(part.text or "")


def safe_chatbot(**kwargs: Any) -> gr.Chatbot:
    """A Chatbot whose text reaches the browser with markup escaped (see module doc).

    The instance's own postprocess/preprocess are wrapped rather than subclassing: a Chatbot
    subclass makes Gradio write a .pyi stub next to this module and load a custom frontend.
    """
    chatbot = gr.Chatbot(**kwargs)
    postprocess, preprocess = chatbot.postprocess, chatbot.preprocess

    def escaped(value: Any) -> Any:
        data = postprocess(value)
        _map_text(list(data.root), escape_html)
        return data

    def unescaped(payload: Any) -> Any:
        messages = preprocess(payload)
        _map_text(messages, unescape_html)
        return messages

    chatbot.postprocess = escaped  # type: ignore[method-assign]
    chatbot.preprocess = unescaped  # type: ignore[method-assign]
    return chatbot


# -- rendering an answer -----------------------------------------------------------------------
def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content
                         if isinstance(p, dict) and p.get("type") == "text")
    return ""


def to_history(history: list[dict[str, Any]]) -> list[Message]:
    """Gradio's messages -> the assistant's turns (the Sources blocks are left out)."""
    turns: list[Message] = []
    for m in history:
        if (m.get("metadata") or {}).get("title"):
            continue
        role = m.get("role")
        if role in ("user", "assistant"):
            turns.append(Message(role, message_text(m)))
    return turns


def sources_markdown(answer: Answer) -> str:
    label = answer.grounding or ("refused" if answer.refused else "quoted")
    blocks = [f"*{escape_markdown(GROUNDING.get(label, label).capitalize())}.*"]
    for c in answer.citations:
        heading = f"**[{c.id}] {escape_markdown(c.title or c.document)}**"
        if c.section:
            heading += f" — {escape_markdown(c.section)}"
        quote = "\n".join("> " + escape_markdown(line) if line.strip() else ">"
                          for line in c.text.strip().splitlines())
        where = f"*{escape_markdown(c.document)}*"
        if c.page is not None:
            where += f" · page {c.page}"
        # The link is relative to the page, so it holds under a proxy's path prefix too;
        # every character of it that Markdown could read is percent-encoded.
        where += f" · [open in the document]({c.url})"
        blocks.append(f"{heading}  \n{where}\n\n{quote}")
    for note in answer.notes:
        blocks.append(f"*{escape_markdown(note)}*")
    return "\n\n".join(blocks)


def answer_messages(answer: Answer) -> list[gr.ChatMessage]:
    out = [gr.ChatMessage(role="assistant", content=answer.answer)]
    if answer.citations:
        out.append(gr.ChatMessage(role="assistant", content=sources_markdown(answer),
                                  metadata={"title": SOURCES_TITLE, "status": "done"}))
    elif answer.suggestions:
        listing = "\n".join(f"- {escape_markdown(s)}" for s in answer.suggestions)
        out.append(gr.ChatMessage(role="assistant", content=listing,
                                  metadata={"title": SUGGESTIONS_TITLE, "status": "done"}))
    return out


# -- feedback ----------------------------------------------------------------------------------
class FeedbackLog:
    """Likes and dislikes, one JSON object a line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def record(self, history: list[dict[str, Any]], index: Any, liked: Any) -> dict[str, Any]:
        i = index[0] if isinstance(index, list | tuple) else int(index)
        message = history[i] if 0 <= i < len(history) else {}
        question = next((message_text(m) for m in reversed(history[:i])
                         if m.get("role") == "user"), "")
        sources = ""
        if i + 1 < len(history) and (history[i + 1].get("metadata") or {}).get("title"):
            sources = message_text(history[i + 1])
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "rating": "like" if liked is True else "dislike" if liked is False else str(liked),
            "question": question,
            "answer": message_text(message),
            "sources": sources,
            "index": i,
        }
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        return entry


# -- the page ----------------------------------------------------------------------------------
def page_collection(request: gr.Request | None) -> str | None:
    """The `collection` query parameter of the page a call comes from (None: not given)."""
    if request is None:
        return None
    try:
        params = dict(request.query_params)
    except AttributeError:
        return None
    value = params.get("collection")
    return None if value is None else str(value)


def _scope_and_headers(request: gr.Request | None) -> tuple[dict[str, Any], Headers]:
    """What the origin checks read, from the HTTP request behind a Gradio call (or, for a
    queued call whose request was copied, its headers and URL)."""
    raw = getattr(request, "request", None)
    if raw is not None:
        return raw.scope, raw.headers
    try:
        headers = {str(k): str(v) for k, v in dict(getattr(request, "headers", {}) or {}).items()}
        scheme = urlsplit(str(getattr(request, "url", "") or "")).scheme or "http"
    except (AttributeError, TypeError, ValueError):
        headers, scheme = {}, "http"
    return {"scheme": scheme}, Headers(headers=headers)


def documents_tab() -> gr.HTML:
    """The Documents tab's one component: a small client of /api/documents (documents.js)."""
    return gr.HTML(value="", html_template=widget_source("documents.html"),
                   css_template=widget_source("documents.css"),
                   js_on_load=widget_source("documents.js"), elem_id="documents",
                   apply_default_css=True)


def make_ui(assistant: AssistantLike, settings: Any, limiter: Any = None,
            collection_origins: CollectionOrigins | None = None) -> gr.Blocks:
    generators = list(assistant.generators)
    feedback = FeedbackLog(Path(settings.data_dir) / "feedback.jsonl")
    origins = collection_origins or CollectionOrigins(
        dict(settings.collection_origins), OriginPolicy(list(settings.allowed_origins)))

    def fail(request: gr.Request | None, status: int, message: str,
             headers: dict[str, str] | None = None) -> gr.Error:
        """A gr.Error for the page; Gradio's HTTP API (/run, /api) answers `status` with it
        instead of 500 (the guard reads the note left in the request's state)."""
        scope = getattr(getattr(request, "request", None), "scope", None)
        if isinstance(scope, dict):
            scope.setdefault("state", {})[GRADIO_ERROR] = (status, message, headers or {})
        return gr.Error(message, print_exception=False)

    def collection_for(request: gr.Request | None) -> str | None:
        """The page's collection, checked as the API checks it (422, 403, 404)."""
        name = page_collection(request)
        if name is None:
            name = DEFAULT
        try:
            valid_name(name)
        except CollectionError as exc:
            raise fail(request, exc.status, str(exc)) from exc
        scope, headers = _scope_and_headers(request)
        refusal = origins.refusal(name, scope, headers)
        if refusal is not None:
            raise fail(request, 403, refusal)
        if name != DEFAULT and not assistant.has_collection(name):
            raise fail(request, 404, f"Unknown collection {name!r}; the collections are: "
                       f"{', '.join(assistant.collections())}.")
        return None if name == DEFAULT else name

    def answer(message: str, history: list[dict[str, Any]], generator: str | None,
               request: gr.Request | None) -> Iterator[Any]:
        if limiter is not None and request is not None and request.client is not None:
            wait = limiter.hit(request.client.host)
            if wait:
                seconds = int(wait) + 1
                raise fail(request, 429, f"Too many questions; try again in {seconds} s.",
                           {"Retry-After": str(seconds)})
        collection = collection_for(request)
        text = ""
        try:
            for event in assistant.stream(message, to_history(history), generator,
                                          collection=collection):
                if isinstance(event, Delta):
                    text += event.text
                    yield text
                elif isinstance(event, Final):
                    yield answer_messages(event.answer)
        except InputError as exc:
            raise fail(request, 422, str(exc)) from exc
        except CollectionError as exc:
            raise fail(request, exc.status, str(exc)) from exc
        except Exception as exc:
            if isinstance(exc, BusyError) or _is_busy(exc):
                raise fail(request, 503, BUSY_MESSAGE,
                           {"Retry-After": str(BUSY_RETRY_AFTER_S)}) from exc
            log.exception("answering failed")
            raise fail(request, 500, f"The assistant failed to answer "
                       f"({type(exc).__name__}).") from exc

    # The function's signature decides what Gradio passes, so there are two of them.
    if len(generators) > 1:
        def respond(message: str, history: list[dict[str, Any]], generator: str,
                    request: gr.Request) -> Iterator[Any]:
            yield from answer(message, history, generator, request)
    else:
        def respond(message: str, history: list[dict[str, Any]],  # type: ignore[misc]
                    request: gr.Request) -> Iterator[Any]:
            yield from answer(message, history, None, request)

    def on_like(history: list[dict[str, Any]], data: gr.LikeData) -> None:
        feedback.record(history, data.index, data.liked)

    def show_collection(request: gr.Request) -> Any:
        """On load: which collection this page answers from, or why it cannot."""
        name = page_collection(request)
        if name is None or name == DEFAULT:
            return gr.update(visible=False)
        try:
            collection_for(request)
        except gr.Error as exc:
            return gr.update(value=f"**{escape_markdown(escape_html(exc.message))}**",
                             visible=True)
        return gr.update(value=f"Answers come from the collection **{name}**.", visible=True)

    with gr.Blocks(title=TITLE, analytics_enabled=False, fill_height=True) as page:
        notice = gr.Markdown(visible=False, elem_id="collection-notice")
        if settings.admin_key:
            with gr.Tabs():
                with gr.Tab("Chat", id="chat"):
                    chat_interface(respond, generators, on_like)
                with gr.Tab("Documents", id="documents"):
                    documents_tab()
        else:
            chat_interface(respond, generators, on_like)
        page.load(show_collection, None, notice, api_visibility="private",
                  show_progress="hidden")
    return page


def chat_interface(respond: Any, generators: list[str], on_like: Any) -> None:
    """The chat itself: a ChatInterface with the Sources blocks, examples and feedback."""
    chatbot = safe_chatbot(
        label="Conversation", scale=1, sanitize_html=True, render_markdown=True,
        allow_tags=False, latex_delimiters=[], buttons=["copy"],
        placeholder="Ask about the documents. Every answer cites the passages it used.",
    )
    extra: list[Any] = []
    examples: list[Any] = EXAMPLES
    if len(generators) > 1:
        extra = [gr.Dropdown(generators, value=generators[0], label="Answer with",
                             render=False)]  # unrendered: ChatInterface puts it in an accordion
        examples = [[q, None] for q in EXAMPLES]
    gr.ChatInterface(
        respond,
        chatbot=chatbot,
        textbox=gr.Textbox(placeholder="Ask a question…", submit_btn=True, stop_btn=True,
                           max_lines=6, show_label=False),
        additional_inputs=extra,
        additional_inputs_accordion="Generator" if extra else None,
        examples=examples,
        run_examples_on_click=True,
        cache_examples=False,
        title=TITLE,
        description="Answers come from the documents, with numbered sources. "
                    "Open **Sources** under an answer to read the quoted passages.",
        api_name="chat",
        # Gradio's default runs one chat at a time for everyone; extractive answers can
        # run side by side, and the local model bounds itself (BusyError -> "busy").
        concurrency_limit=None,
        analytics_enabled=False,
        fill_height=True,
    )
    chatbot.like(on_like, [chatbot], None, api_visibility="undocumented", queue=False)
