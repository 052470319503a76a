"""The command table: other front ends are imported only when their command runs."""

from __future__ import annotations

import subprocess
import sys


def test_ask_imports_neither_server_nor_evaluation() -> None:
    code = ("import sys; from assistant import cli; cli.build_parser(['ask', 'q']); "
            "print(sorted(m for m in sys.modules if m.startswith(('assistant.evaluation', "
            "'assistant.server', 'matplotlib', 'llama_index'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_every_lazy_command_configures_and_resolves() -> None:
    from assistant import cli

    for name in cli.LAZY_COMMANDS:
        args = cli.build_parser([name]).parse_args([name])
        assert callable(args.func), name
    help_text = cli.build_parser([]).format_help()
    assert all(name in help_text for name in cli.LAZY_COMMANDS)
