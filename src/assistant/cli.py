"""The `assistant` command line: ingest, ask, chat (and, from other modules, serve/eval/bench)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .settings import Settings

EXAMPLES = """
examples:
  assistant ingest                         index the documents in corpus/
  assistant ingest ~/papers/report.pdf     add or update one document
  assistant ingest --collection news news/ index a folder into the collection "news"
  assistant ingest --watch                 re-ingest corpus/ whenever its files change
  assistant ask "How much did the NotPetya attack cost Maersk?"
  assistant ask --json "What is the YAKSHA project?"
  assistant chat                           a conversation in the terminal

Settings come from ASSISTANT_* environment variables or assistant.toml (see README).
"""

# Commands whose code lives in other modules: name -> (help, module, configure, run). The
# module is imported only when its command runs, so `assistant ask` never loads the server
# or the evaluation, and those modules never edit this table.
LAZY_COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "serve": ("serve the chat page, the HTTP API and the widget",
              "assistant.server.cli", "configure", "run"),
    "eval": ("evaluate answers on the development and test sets; write a report",
             "assistant.evaluation.cli", "configure_eval", "run_eval"),
    "bench": ("benchmark speed and memory beside the llama-index baseline",
              "assistant.evaluation.cli", "configure_bench", "run_bench"),
    "bench-chat": ("benchmark this pipeline against llama-index's CondensePlusContextChatEngine",
                   "assistant.evaluation.chat_bench", "configure", "run_cli"),
    "bench-repro": ("ask questions in two orders: do answers depend on the one asked before?",
                    "assistant.evaluation.repro", "configure", "run_cli"),
}


def _assistant(settings: Settings) -> Any:
    from .core import Assistant  # heavy imports only when a command needs them

    return Assistant(settings)


def _progress_bar() -> tuple[Callable[[int, int], None], Callable[[], None]]:
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, unit="text", desc="embedding chunks and sentences",
                              file=sys.stderr)
        bar["bar"].n = done
        bar["bar"].refresh()

    def close() -> None:
        if "bar" in bar:
            bar["bar"].close()

    return update, close


def _say(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"note: {message}", file=sys.stderr)  # above the progress bar, if there is one


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": message}, ensure_ascii=False))
    else:
        print(f"error: {message}", file=sys.stderr)
    return code


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from .catalog import DEFAULT, CollectionError, valid_name
    from .locking import IngestBusy

    try:
        collection = valid_name(args.collection)
    except CollectionError as exc:
        return _fail(args, str(exc), 2)
    if collection != DEFAULT and not args.paths:
        return _fail(args, f"name the files or folders to ingest into the collection "
                     f"{collection!r} (the corpus folder belongs to {DEFAULT!r})", 2)
    if args.watch:
        return _watch(args, settings, collection)
    assistant = _assistant(settings)
    update, close = _progress_bar()
    try:
        report = assistant.ingest([Path(p) for p in args.paths] or None, sync=not args.keep,
                                  progress=update, notify=_say, collection=collection)
    except IngestBusy as exc:  # another ingest kept the index: nothing was changed
        return _fail(args, str(exc), 2)
    finally:
        close()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        where = "the index" if collection == DEFAULT else f"the collection {collection!r}"
        print(
            f"{report.documents} documents, {report.chunks} chunks in {where} "
            f"({len(report.added)} added, {len(report.updated)} updated, "
            f"{len(report.removed)} removed, {len(report.unchanged)} unchanged; "
            f"{report.embedded_chunks} chunks and {report.embedded_sentences} sentences "
            f"embedded) in {report.seconds:.1f} s"
        )
        for path, reason in report.failures.items():
            print(f"  failed: {path}: {reason}", file=sys.stderr)
    return 0 if report.ok else 1


def _watch(args: argparse.Namespace, settings: Settings, collection: str) -> int:
    """`ingest --watch`: ingest, then again after every batch of changes, until Ctrl-C."""
    from .watch import Batch, watch

    if args.debounce <= 0:
        print("error: --debounce must be a positive number of seconds", file=sys.stderr)
        return 2
    paths = [Path(p) for p in args.paths] or [settings.corpus_dir]
    assistant = _assistant(settings)
    reported: dict[str, str] = {}

    def on_batch(batch: Batch) -> None:
        failures = batch.report.failures if batch.report else {}
        if args.json:
            print(json.dumps({"changes": batch.changes, "error": batch.error or None,
                              "report": batch.report.to_json() if batch.report else None}),
                  flush=True)
        else:
            print(batch.line(), flush=True)
            for path, reason in failures.items():  # each failure once, until it changes
                if reported.get(path) != reason:
                    print(f"  failed: {path}: {reason}", file=sys.stderr)
        if batch.report is not None:
            reported.clear()
            reported.update(failures)

    print(f"watching {', '.join(str(p) for p in paths)} (Ctrl-C stops)", file=sys.stderr)
    try:
        watch(assistant, paths, sync=not args.keep, quiet_s=args.debounce,
              on_batch=on_batch, notify=_say, collection=collection)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # An ingest cut short changed nothing that is served; the next one resumes it.
        print("stopped watching", file=sys.stderr)
    return 0


def _print_answer(answer: Any, *, streamed: bool = False) -> None:
    if not streamed:
        print(answer.answer)
    if answer.refused and answer.suggestions:
        print("\nClosest sections:")
        for s in answer.suggestions:
            print(f"  - {s}")
    if answer.citations:
        print("\nSources:")
        for c in answer.citations:
            quote = " ".join(c.text.split())
            if len(quote) > 300:
                quote = quote[:297] + "..."
            where = c.document + (f", page {c.page}" if c.page is not None else "")
            print(f"  [{c.id}] {c.title} — {c.section or '(top)'} ({where})")
            print(f"      \"{quote}\"")
    for note in answer.notes:
        print(f"\nnote: {note}")


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from .catalog import CollectionError
    from .core import Delta, Final, InputError
    from .store import StoreError

    question = " ".join(args.question)
    try:
        assistant = _assistant(settings)
        if args.json:
            answer = assistant.ask(question, collection=args.collection)
            print(json.dumps(answer.to_json(), ensure_ascii=False, indent=2))
            return 0
        final = None
        for event in assistant.stream(question, collection=args.collection):
            if isinstance(event, Delta):
                print(event.text, end="", flush=True)
            elif isinstance(event, Final):
                final = event.answer
        print()
        if final is not None:
            _print_answer(final, streamed=True)
        return 0
    except (InputError, CollectionError, StoreError) as exc:
        return _fail(args, str(exc), 1 if isinstance(exc, StoreError) else 2)


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    from .catalog import CollectionError
    from .core import Delta, Final, InputError
    from .types import Message

    assistant = _assistant(settings)
    try:
        assistant.space(args.collection)
    except CollectionError as exc:
        return _fail(args, str(exc), 2)
    history: list[Message] = []
    print("Ask about the documents. Empty line or Ctrl-D to quit; /new starts over.")
    while True:
        try:
            question = input("\nyou> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not question:
            return 0
        if question == "/new":
            history.clear()
            continue
        print("assistant> ", end="", flush=True)
        try:
            final = None
            for event in assistant.stream(question, history, collection=args.collection):
                if isinstance(event, Delta):
                    print(event.text, end="", flush=True)
                elif isinstance(event, Final):
                    final = event.answer
            print()
        except InputError as exc:
            print(f"\nerror: {exc}")
            continue
        if final is None:
            continue
        if final.rewritten_question:
            print(f"(understood as: {final.rewritten_question})")
        _print_answer(final, streamed=True)
        history += [Message("user", question), Message("assistant", final.answer)]
        history = history[-settings.max_turns:]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assistant",
        description="Answers questions about your documents, citing the passages it used.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser.add_argument("--config", help="TOML settings file (default: assistant.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "ingest", help="index documents (default: the corpus folder)",
        description="Index documents: new and changed files are embedded, in batches written "
        "as they come; an interrupted ingest resumes where it stopped. One ingest writes to an "
        "index at a time: another one waits up to ASSISTANT_INGEST_LOCK_WAIT_S seconds "
        "(default 300), then exits with code 2 without changing anything. Exit code 1: some "
        "files could not be read (the others were indexed).")
    p.add_argument("paths", nargs="*", help="files or folders (default: corpus/)")
    p.add_argument("--keep", action="store_true",
                   help="keep documents whose files are gone instead of removing them")
    p.add_argument("--collection", default="default", metavar="NAME",
                   help="the collection to ingest into (created when new; default: default, "
                   "whose documents come from the corpus folder)")
    p.add_argument("--json", action="store_true",
                   help="print the summary as JSON (with --watch: one JSON line per batch)")
    p.add_argument("--watch", action="store_true",
                   help="keep watching the folders and ingest again whenever files are "
                   "added, changed or removed (Ctrl-C stops)")
    p.add_argument("--debounce", type=float, default=1.5, metavar="SECONDS",
                   help="with --watch: how long the files must be quiet before a batch of "
                   "changes is ingested (default 1.5)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("ask", help="answer one question")
    p.add_argument("question", nargs="+", help="the question")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: answer, refused, citations, mode, timings_ms")
    p.add_argument("--collection", metavar="NAME", help="answer from this collection only "
                   "(default: default)")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("chat", help="a conversation in the terminal (follow-ups understood)")
    p.add_argument("--collection", metavar="NAME", help="answer from this collection only "
                   "(default: default)")
    p.set_defaults(func=cmd_chat)

    chosen = _chosen_command(argv)
    for name, (help_, module, configure, run) in LAZY_COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        if name == chosen:  # only the command that runs is imported
            import importlib

            mod = importlib.import_module(module)
            getattr(mod, configure)(p)
            p.set_defaults(func=getattr(mod, run))
    return parser


def _chosen_command(argv: Sequence[str] | None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a == "--config":
            skip = True
        elif not a.startswith("-"):
            return a
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.config:
        import os

        os.environ["ASSISTANT_CONFIG"] = args.config
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's ValidationError lists every bad setting
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args, settings))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from .store import StoreError

        if isinstance(exc, StoreError | OSError):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
