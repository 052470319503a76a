"""A tiny stand-in for `assistant.core.Assistant`: fast API tests without a model or an index."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from assistant.catalog import DEFAULT, CollectionError, valid_name
from assistant.chunking import chunk_document
from assistant.core import BusyError, Delta, Event, Final, validate
from assistant.documents import SourceDocument
from assistant.settings import Settings
from assistant.sources import DocumentText
from assistant.types import Answer, Citation, Message

QUOTE = "Quoted <b>text</b> [sic]."
# The fake's one document: markup in it must stay text in the document view.
DOCUMENT = SourceDocument(
    id="doc.md", path=Path("doc.md"), title="A document", kind="markdown",
    text=f"# A document\n\n## Part\n\n### Section\n\nA first sentence. {QUOTE} "
         "<script>window.__pwned = 'fake'</script> And <img src=x onerror=alert(1)> more.\n")
CITATION = Citation(1, "doc.md", "A document", "Part › Section", QUOTE,
                    start=DOCUMENT.text.index(QUOTE),
                    end=DOCUMENT.text.index(QUOTE) + len(QUOTE), version=DOCUMENT.content_hash)
ANSWER = "The answer is here [1]."


class FakeAssistant:
    def __init__(self, settings: Settings | None = None, *, generators: Sequence[str] = (
            "extractive",), delay: float = 0.0, busy: bool = False,
            fail_midway: bool = False, collections: Sequence[str] = ()) -> None:
        self.settings = settings or Settings(data_dir=Path("/nonexistent"))
        self._collections = [DEFAULT, *collections]
        self.used: list[str | None] = []  # the collection each stream() was asked for
        self._generators = list(generators)
        self.delay = delay
        self.busy = busy
        self.fail_midway = fail_midway
        self.calls: list[tuple[str, list[Message], str | None]] = []
        self.threads: set[int] = set()

    @property
    def generators(self) -> list[str]:
        return list(self._generators)

    def health(self) -> dict[str, Any]:
        return {"documents": 1, "chunks": 3, "generator": self._generators[0],
                "store": "embedded", "embedding_model": "fake",
                "collections": self.collection_info()}

    def collections(self, refresh: bool = False) -> list[str]:
        return list(self._collections)

    def has_collection(self, name: str) -> bool:
        return valid_name(name) in self._collections

    def collection_info(self) -> list[dict[str, Any]]:
        return [{"name": c, "documents": 1, "chunks": 3} for c in self._collections]

    def _check(self, collection: str | None) -> None:
        if collection is not None and not self.has_collection(collection):
            raise CollectionError(f"Unknown collection {collection!r}", 404)

    def document(self, document: str, collection: str | None = None) -> DocumentText | None:
        self._check(collection)
        if document != DOCUMENT.id:
            return None
        entry = {"fingerprint": f"{DOCUMENT.content_hash}:2:900:fake", "title": DOCUMENT.title}
        return DocumentText.build(DOCUMENT.id, entry, chunk_document(DOCUMENT))

    def stream(self, question: str, history: Sequence[Message] = (),
               generator: str | None = None, collection: str | None = None
               ) -> Iterator[Event]:
        q = validate(question, history, self.settings)
        self._check(collection)
        self.used.append(collection)
        if self.busy:
            raise BusyError("queue full")
        self.threads.add(threading.get_ident())
        self.calls.append((q, list(history), generator))
        if self.delay:
            time.sleep(self.delay)
        yield Delta("The answer ")
        yield Delta("is here [1].")
        if self.fail_midway:
            raise RuntimeError("the model fell over")
        yield Final(Answer(answer=ANSWER, refused=False, citations=[CITATION],
                           mode=generator or self._generators[0],
                           timings_ms={"total": 1.0}))


class SlowAssistant(FakeAssistant):
    """Like a local model on a CPU: the first token after `first_delay` seconds, then one
    token every `token_delay`; records how many tokens it produced and whether it was closed
    (a closed generator stops, as LocalLlama's does)."""

    def __init__(self, *, first_delay: float = 1.5, token_delay: float = 0.05,
                 tokens: int = 200) -> None:
        super().__init__()
        self.first_delay = first_delay
        self.token_delay = token_delay
        self.tokens = tokens
        self.produced = 0
        self.closed = threading.Event()
        self.finished = threading.Event()

    def stream(self, question: str, history: Sequence[Message] = (),
               generator: str | None = None, collection: str | None = None
               ) -> Iterator[Event]:
        validate(question, history, self.settings)
        self.calls.append((question, list(history), generator))
        try:
            time.sleep(self.first_delay)  # prompt processing: cannot be interrupted
            for i in range(self.tokens):
                self.produced += 1
                yield Delta(f"word{i} ")
                time.sleep(self.token_delay)
            self.finished.set()
            yield Final(Answer(answer=ANSWER, refused=False, citations=[CITATION],
                               mode="local", timings_ms={"total": 1.0}))
        except GeneratorExit:
            self.closed.set()
            raise
