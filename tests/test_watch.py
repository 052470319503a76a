"""`assistant ingest --watch`: the index follows a folder as files are added, changed and
removed. Asserts behaviour, not timing: the index is polled until it follows, with a
generous deadline."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from assistant.ingest import IngestReport
from assistant.watch import Batch, _Filter

from .office import write_docx

if TYPE_CHECKING:
    from assistant import Assistant
    from assistant.embeddings import Embedder

DEADLINE_S = 60.0


def eventually(check: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            pytest.fail(f"the index did not follow within {deadline_s:.0f} s: {what}")
        time.sleep(0.2)


def test_filter_takes_files_of_the_watched_folders_only(tmp_path: Path) -> None:
    corpus, data, single = tmp_path / "corpus", tmp_path / "corpus" / "data", tmp_path / "a.md"
    accept = _Filter([corpus], {single}, [data])
    assert accept(None, str(corpus / "notes.docx"))
    assert accept(None, str(corpus / "sub" / "notes.md"))
    assert accept(None, str(single))
    assert not accept(None, str(corpus / ".notes.md.swp"))  # hidden, as ingest skips them
    assert not accept(None, str(corpus / ".git" / "index"))
    assert not accept(None, str(corpus / "~$notes.docx"))  # Word's owner file
    assert not accept(None, str(data / "chroma" / "chroma.sqlite3"))  # the index itself
    assert not accept(None, str(tmp_path / "b.md"))  # beside a watched file


def test_batch_line_says_what_changed() -> None:
    report = IngestReport(documents=3, chunks=12, added=["a.md"], removed=["b.md", "c.md"],
                          failures={"x.docx": "damaged"}, seconds=0.42)
    line = Batch(changes=3, report=report).line()
    assert line.endswith("3 changes: 1 added (a.md), 2 removed (b.md, c.md), 1 failed; "
                         "3 documents, 12 chunks (0.4 s)")
    assert "first ingest: no change to the index" in Batch(0, IngestReport()).line()
    assert "retrying in 5 s" in Batch(1, error="ingest failed (down)", retry_s=5).line()


@pytest.fixture
def watching(tmp_path: Path, embedder: Embedder
             ) -> Iterator[tuple[Assistant, Path, list[Batch]]]:
    """A watch over a temp folder with one document, in a background thread."""
    from assistant import Assistant, Settings
    from assistant.watch import watch

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "harbour.md").write_text("# Harbour\n\nThe harbour of Zork has 12 cranes.\n")
    assistant = Assistant(Settings(data_dir=tmp_path / "data", corpus_dir=corpus,
                                   generator="extractive"), embedder=embedder)
    batches: list[Batch] = []
    stop = threading.Event()
    thread = threading.Thread(target=watch, args=(assistant, [corpus]),
                              kwargs={"quiet_s": 0.3, "stop": stop,
                                      "on_batch": batches.append}, daemon=True)
    thread.start()
    try:
        eventually(lambda: batches, "the first ingest")
        yield assistant, corpus, batches
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the watch did not stop"


@pytest.mark.slow
def test_watch_follows_added_changed_and_removed_files(
        watching: tuple[Assistant, Path, list[Batch]]) -> None:
    assistant, corpus, batches = watching
    first = batches[0]
    assert first.changes == 0 and first.report is not None and first.report.added == [
        "harbour.md"]

    def manifest() -> dict[str, Any]:
        return dict(assistant.index.state()["manifest"])

    # Added: a Word document.
    write_docx(corpus / "manual.docx")
    eventually(lambda: "manual.docx" in manifest(), "manual.docx added")
    # The served answers follow too (a retriever looks for a new generation every 2 s).
    answer = eventually(lambda: (lambda a: a if not a.refused else None)(
        assistant.ask("How often does the keeper inspect the main lamp?")), "answer follows")
    assert "every Tuesday" in answer.answer
    assert any(c.document == "manual.docx" for c in answer.citations)

    # Changed.
    before = manifest()["harbour.md"]["fingerprint"]
    (corpus / "harbour.md").write_text("# Harbour\n\nThe harbour of Zork has 14 cranes.\n")
    eventually(lambda: manifest()["harbour.md"]["fingerprint"] != before, "harbour.md changed")
    eventually(lambda: "14 cranes" in assistant.ask(
        "How many cranes does the harbour of Zork have?").answer, "changed answer")

    # A damaged file is reported and skipped; the index keeps the rest.
    (corpus / "broken.docx").write_bytes(b"PK\x03\x04 damaged")
    eventually(lambda: any(b.report and str(corpus / "broken.docx") in b.report.failures
                           for b in batches), "broken.docx reported")
    assert set(manifest()) == {"harbour.md", "manual.docx"}

    # Removed.
    (corpus / "manual.docx").unlink()
    eventually(lambda: "manual.docx" not in manifest(), "manual.docx removed")
    eventually(lambda: assistant.ask("How often does the keeper inspect the main lamp?").refused,
               "answer gone")
    assert all(not b.error for b in batches)
    assert any(b.report and b.report.removed == ["manual.docx"] for b in batches)


@pytest.mark.slow
def test_cli_watch_prints_a_line_per_batch_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "harbour.md").write_text("# Harbour\n\nThe harbour of Zork has 12 cranes.\n")
    env = {**os.environ, "ASSISTANT_DATA_DIR": str(tmp_path / "data"),
           "ASSISTANT_GENERATOR": "extractive", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "assistant.cli", "ingest", "--watch", "--debounce", "0.3",
         str(corpus)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # A shell's background job runs with SIGINT ignored, and the child would inherit
        # that: Ctrl-C is what is tested, so the child starts with the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in proc.stdout or ():
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()

    def next_line() -> str:
        try:
            return lines.get(timeout=DEADLINE_S * 2)  # the first one waits for the model
        except queue.Empty:
            proc.kill()
            pytest.fail(f"no line from the watch; stderr: {proc.communicate()[1]}")

    try:
        assert "first ingest: 1 added (harbour.md)" in next_line()
        (corpus / "ferry.md").write_text("# Ferry\n\nThe ferry leaves at noon.\n")
        assert "1 added (ferry.md)" in next_line()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped watching" in err and "Traceback" not in err
