"""The store's contract, run over embedded Chroma and a real `chroma run` server alike, so the
two cannot drift: incremental ingest, one writer at a time, batches and resume, clean-up."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant import Assistant, Settings
from assistant import ingest as ingest_module
from assistant.cli import main
from assistant.embeddings import Embedder
from assistant.locking import IngestBusy

pytestmark = pytest.mark.slow

MakeSettings = Callable[..., Settings]


@pytest.fixture(params=["embedded", "server"])
def make_settings(request: pytest.FixtureRequest, tmp_path: Path) -> MakeSettings:
    url = request.getfixturevalue("chroma_server") if request.param == "server" else ""
    name = f"t{uuid.uuid4().hex[:10]}"  # tests share the session's server

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"data_dir": tmp_path / "data", "chroma_url": url,
                                   "collection": name, "generator": "extractive"}
        return Settings(**{**values, **overrides})

    return make


def _env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """The same settings for `assistant` commands run through cli.main."""
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("ASSISTANT_CHROMA_URL", settings.chroma_url)
    monkeypatch.setenv("ASSISTANT_COLLECTION", settings.collection)


def _generations(a: Assistant) -> list[str]:
    prefix = f"{a.settings.collection}-g"
    names = [c if isinstance(c, str) else c.name for c in a.index.client.list_collections()]
    return sorted(n for n in names if n.startswith(prefix))


def test_ingest_is_incremental_and_keeps_one_generation(
        make_settings: MakeSettings, multidoc_corpus: Path, embedder: Embedder) -> None:
    a = Assistant(make_settings(), embedder=embedder)
    first = a.ingest([multidoc_corpus])
    assert first.ok and first.documents == 3 and first.embedded_chunks == first.chunks
    assert a.ingest([multidoc_corpus]).embedded_chunks == 0

    charter = multidoc_corpus / "harbour-charter.md"
    charter.write_text(charter.read_text().replace("seven port authorities",
                                                   "eight port authorities"))
    (multidoc_corpus / "ferry-guidelines.txt").unlink()
    changed = a.ingest([multidoc_corpus])
    assert changed.updated == ["harbour-charter.md"] and changed.removed == ["ferry-guidelines.txt"]
    assert changed.documents == 2 and a.health()["documents"] == 2
    assert "eight" in a.ask("How many port authorities signed the Lindqvist charter?").answer
    # The served generation and its sentences; nothing else is left.
    active = a.index.state()["active"]
    assert _generations(a) == [active, active + "-sentences"]
    assert a.index.state()["embedding_backend"] == "onnx"  # the backend that wrote it


def test_a_second_ingest_waits_for_the_first_then_gives_up(
        make_settings: MakeSettings, multidoc_corpus: Path, embedder: Embedder,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(ingest_lock_wait_s=0.5)
    first = Assistant(settings, embedder=embedder)
    second = Assistant(settings, embedder=embedder)
    heard: list[str] = []
    with first.index.writing(wait_s=5):  # another ingest is writing
        with pytest.raises(IngestBusy, match=r"another ingest .* still writing"):
            second.ingest([multidoc_corpus], notify=heard.append)
        assert len(heard) == 1  # said once, not at every poll
        assert heard[0].startswith("another ingest (") and "waiting up to 0.5 s" in heard[0]

        _env(monkeypatch, settings)
        monkeypatch.setenv("ASSISTANT_INGEST_LOCK_WAIT_S", "0.5")
        assert main(["ingest", str(multidoc_corpus)]) == 2
        err = capsys.readouterr().err
        assert "waiting up to" in err and "error: another ingest" in err
        assert "nothing was changed" in err
    assert second.health()["documents"] == 0
    assert second.ingest([multidoc_corpus]).documents == 3  # free again


def test_two_ingests_at_once_keep_both_updates(
        make_settings: MakeSettings, tmp_path: Path, embedder: Embedder) -> None:
    folders = {}
    for name, text in (("a", "The harbour of Zork has 12 cranes."),
                       ("b", "The river of Quell has 9 bridges.")):
        folders[name] = tmp_path / f"src-{name}"
        folders[name].mkdir()
        (folders[name] / f"{name}.md").write_text(f"# Doc {name}\n\n{text}\n")

    a_embedding = threading.Event()
    b_moved = threading.Event()  # B waits for the lock (or, without one, embeds too)

    class Gate:
        name, dimension = embedder.name, embedder.dimension

        def embed(self, texts: list[str]) -> np.ndarray:
            if threading.current_thread().name == "ingest-a":
                a_embedding.set()
                b_moved.wait(120)  # only a guard against a hang
            else:
                b_moved.set()
            return embedder.embed(texts)

    settings = make_settings(ingest_lock_wait_s=300)
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            a = Assistant(settings, embedder=Gate())
            a.ingest([folders[name]], notify=lambda _msg: b_moved.set())
        except BaseException as exc:
            errors.append(exc)

    ta = threading.Thread(target=run, args=("a",), name="ingest-a")
    ta.start()
    assert a_embedding.wait(120)
    tb = threading.Thread(target=run, args=("b",), name="ingest-b")
    tb.start()
    ta.join(300)
    tb.join(300)
    assert not errors
    fresh = Assistant(settings, embedder=embedder)
    assert set(fresh.index.state()["manifest"]) == {"a.md", "b.md"}
    assert fresh.health()["documents"] == 2
    active = fresh.index.state()["active"]
    assert _generations(fresh) == [active, active + "-sentences"]


def test_batches_are_bounded_and_an_interrupted_ingest_resumes(
        make_settings: MakeSettings, multidoc_corpus: Path, embedder: Embedder) -> None:
    settings = make_settings(ingest_batch_size=8)
    calls: list[int] = []

    class FailsOnFourthBatch:
        name, dimension = embedder.name, embedder.dimension

        def embed(self, texts: list[str]) -> np.ndarray:
            calls.append(len(texts))
            if len(calls) == 4:
                raise RuntimeError("power cut")
            return embedder.embed(texts)

    with pytest.raises(RuntimeError, match="power cut"):
        Assistant(settings, embedder=FailsOnFourthBatch()).ingest([multidoc_corpus])
    assert max(calls) <= 8
    a = Assistant(settings, embedder=embedder)
    assert a.health()["documents"] == 0  # nothing was served from the half-built generation
    resumed = a.ingest([multidoc_corpus])
    assert resumed.ok and resumed.reused == 24  # the three batches written before the crash
    # The resumed index equals one built in one go.
    whole = Assistant(make_settings(collection=settings.collection + "w"), embedder=embedder)
    once = whole.ingest([multidoc_corpus])
    assert resumed.embedded_chunks + resumed.embedded_sentences + resumed.reused == \
        once.embedded_chunks + once.embedded_sentences
    assert resumed.chunks == once.chunks
    sentences, whole_sentences = a.index.sentence_collection(), whole.index.sentence_collection()
    assert sentences is not None and whole_sentences is not None
    assert sentences.count() == whole_sentences.count()
    assert sorted(c.id for c in a.index.all_chunks()) == \
        sorted(c.id for c in whole.index.all_chunks())
    active = a.index.state()["active"]
    assert _generations(a) == [active, active + "-sentences"]


def test_a_long_job_is_announced_with_an_estimate(
        make_settings: MakeSettings, multidoc_corpus: Path, embedder: Embedder,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(ingest_module, "LONG_JOB_S", 0.0)  # every job counts as long here
    settings = make_settings(ingest_batch_size=8)
    _env(monkeypatch, settings)
    monkeypatch.setenv("ASSISTANT_INGEST_BATCH_SIZE", "8")
    assert main(["ingest", "--json", str(multidoc_corpus)]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["estimate_s"] > 0
    note = next(line[line.index("note: "):] for line in err.splitlines()
                if "note: this is a long job" in line)
    chunks = report["embedded_chunks"]
    assert f"{chunks} chunks and {report['embedded_sentences']} sentences to embed" in note
    assert "estimated" in note and "minutes" in note


def test_replaced_generations_leave_no_index_files(
        make_settings: MakeSettings, multidoc_corpus: Path, embedder: Embedder) -> None:
    a = Assistant(make_settings(), embedder=embedder)
    a.ingest([multidoc_corpus])
    for n in range(2):
        (multidoc_corpus / "extra.md").write_text(f"# Extra\n\nRevision {n} of a short note.\n")
        a.ingest([multidoc_corpus])
    active = a.index.state()["active"]
    assert _generations(a) == [active, active + "-sentences"]
    # Each generation's keyword index goes with it.
    kept = [d.name for d in a.index.keyword_root.iterdir() if not d.name.startswith(".")]
    assert kept == [active]
    if a.settings.chroma_url:
        return  # the server keeps its own files
    chroma = a.settings.data_dir / "chroma"

    def folders_and_live() -> tuple[set[str], set[str]]:
        folders = {d.name for d in chroma.iterdir() if d.is_dir()}
        db = sqlite3.connect(chroma / "chroma.sqlite3")
        live = {row[0] for row in db.execute("SELECT id FROM segments")}
        db.close()
        return folders, live

    folders, live = folders_and_live()
    assert folders and folders <= live  # the replaced generations' folders are gone
    stray = chroma / str(uuid.uuid4())  # as an abandoned generation leaves its folder
    (stray / "sub").mkdir(parents=True)
    assert a.ingest([multidoc_corpus]).embedded_chunks == 0  # even an unchanged ingest
    assert not stray.exists()
    folders, live = folders_and_live()
    assert folders and folders <= live


def test_the_same_folder_twice_and_a_copy_elsewhere(
        make_settings: MakeSettings, multidoc_corpus: Path, tmp_path: Path,
        embedder: Embedder) -> None:
    """Documents from another folder are left alone by a sync of this one."""
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(multidoc_corpus / "river-compact.md", other / "compact-copy.md")
    a = Assistant(make_settings(), embedder=embedder)
    assert a.ingest([multidoc_corpus]).documents == 3
    assert a.ingest([other]).documents == 4
    (multidoc_corpus / "ferry-guidelines.txt").unlink()
    report = a.ingest([multidoc_corpus])
    assert report.removed == ["ferry-guidelines.txt"] and report.documents == 3
    assert "compact-copy.md" in a.index.state()["manifest"]


@pytest.mark.slow
def test_processes_opening_a_new_embedded_store_at_once_do_not_race(tmp_path: Path) -> None:
    # Creating the database is part of opening it; unserialized, one opener failed with
    # "table collections already exists".
    import subprocess
    import sys
    import time

    start = time.time() + 8  # every process imports first, then all open at this instant
    code = ("import time; from pathlib import Path; from assistant.store import _client; "
            f"time.sleep(max(0, {start} - time.time())); "
            f"print(len(_client(Path({str(tmp_path / 'data')!r}), '').list_collections()))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert all(code == 0 for code, _ in results), [err[-300:] for _, err in results]
