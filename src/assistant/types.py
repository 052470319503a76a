"""The assistant's own data types.

These plain dataclasses are what every front end (CLI, HTTP API, Gradio page, widget,
evaluation) sees. Library objects (llama-index nodes, Chroma results) never leave the
adapters that produce them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlencode

Role = Literal["user", "assistant"]

# A link to a cited passage carries the quote (its first this many characters), so that the
# document view can still show it after the document has changed.
QUOTE_LINK_CHARS = 500
VERSION_CHARS = 16  # of the document's SHA-256 content hash, in a link


def source_url(document: str, start: int, end: int, version: str = "", quote_text: str = "",
               collection: str = "") -> str:
    """The document view's URL of a passage, relative to the app's base URL:
    `docs/<document>?start=S&end=E&v=<content hash>&q=<quote>#cite`, with `c=<collection>`
    before `q` for a collection other than `default`."""
    params: dict[str, str | int] = {"start": start, "end": end}
    if version:
        params["v"] = version[:VERSION_CHARS]
    if collection:
        params["c"] = collection
    if quote_text:
        params["q"] = quote_text[:QUOTE_LINK_CHARS]
    query = urlencode(params, quote_via=quote)
    return f"docs/{quote(document, safe='/')}?{query}#cite"


@dataclass(frozen=True)
class Message:
    """One turn of a conversation."""

    role: Role
    content: str


@dataclass(frozen=True)
class Passage:
    """A chunk of a source document, as stored in the index and returned by retrieval."""

    id: str
    document: str  # document id: the file name relative to its corpus root
    title: str  # the document's title
    section: str  # heading path, e.g. "Digital risks › Port security"
    text: str  # verbatim text of the chunk (a slice of the source file)
    start: int  # character offset of `text` in the source file
    end: int
    score: float = 0.0  # retrieval score (fused); higher is better
    similarity: float = 0.0  # cosine similarity of the question and the passage


@dataclass(frozen=True)
class Citation:
    """A numbered source of an answer: `id` is the n in "[n]"."""

    id: int
    document: str
    title: str
    section: str
    text: str  # the quoted evidence: verbatim from the corpus
    passage_id: str = ""
    start: int = 0  # character offsets of `text` in the document's text
    end: int = 0
    page: int | None = None  # PDFs: the page `text` starts on (1-based)
    version: str = ""  # the document's content hash (SHA-256 of its text) when cited
    collection: str = ""  # the collection it was cited from; "" for `default`

    @property
    def url(self) -> str:
        """The document view of this passage, relative to the app's base URL."""
        return source_url(self.document, self.start, self.end, self.version, self.text,
                          self.collection)

    def public(self) -> dict[str, Any]:
        """The stable JSON shape shared by the CLI, the API, the widget and the evaluation."""
        return {
            "id": self.id,
            "document": self.document,
            "title": self.title,
            "section": self.section,
            "text": self.text,
            "start": self.start,  # character offsets of `text` in the document
            "end": self.end,
            "page": self.page,  # PDFs only; null otherwise
            "url": self.url,  # the document view, with the quote highlighted
        }


# Each label says what the pipeline did, not how sure it is:
GROUNDING = {
    "quoted": "quoted from the documents: the answer is made of verbatim sentences",
    "checked": "written by the language model; every figure and name it states was found "
               "in the sentences it cites",
    "refused": "not in the documents: no passage answers the question",
}


@dataclass
class Answer:
    """An answer with its numbered citations."""

    answer: str
    refused: bool
    citations: list[Citation] = field(default_factory=list)
    mode: str = "extractive"  # which generator produced the text
    timings_ms: dict[str, float] = field(default_factory=dict)
    suggestions: list[str] = field(default_factory=list)  # closest sections, on refusal
    notes: list[str] = field(default_factory=list)  # e.g. "model timed out, extractive answer"
    rewritten_question: str = ""  # the standalone question used for retrieval
    usage: dict[str, int] = field(default_factory=dict)  # prompt/completion tokens (models)
    # What the pipeline did to ground the text (see GROUNDING); set by the answerer.
    grounding: str = ""
    # The extractive answerer's confidence (its best sentence's score); not part of the JSON.
    score: float = 0.0
    collection: str = "default"  # the collection whose passages it was answered from

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "refused": self.refused,
            "citations": [c.public() for c in self.citations],
            "mode": self.mode,
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "suggestions": list(self.suggestions),
            "notes": list(self.notes),
            "rewritten_question": self.rewritten_question,
            "usage": dict(self.usage),
            "grounding": self.grounding or ("refused" if self.refused else "quoted"),
            "collection": self.collection,
        }
