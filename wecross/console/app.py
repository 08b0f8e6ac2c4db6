"""``wecross console``: the interactive shell over a router's REST API, and its non-interactive forms.

Three ways in, one command layer (wecross/console/commands.py):

- ``-c "status; listResources"``: run those commands, exit 1 if any failed;
- stdin not a terminal (``echo status | wecross console``): run its lines the same way;
- otherwise a prompt_toolkit prompt with tab completion and a persistent history.

The console is blocking on purpose: one person or one script, one request at a time, with the SDK's blocking
client. It never prints a traceback: a bad option, an unusable certificate or an unreachable router is one
``error:`` line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from wecross.console.commands import Quit, Session
from wecross.sdk import WeCrossClient, WeCrossError

DEFAULT_ROUTER = "http://127.0.0.1:8250"
HISTORY_ENV = "WECROSS_HISTORY"
DESCRIPTION = ("A console over one router's REST API: a prompt with tab completion and history, or, with -c or "
               "commands piped to stdin, a scripting tool. Type help inside for the commands (docs/console.md).")


def history_path() -> Path:
    """``$WECROSS_HISTORY``, else ``~/.wecross_history``."""
    configured = os.environ.get(HISTORY_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".wecross_history"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--router", default=os.environ.get("WECROSS_ROUTER", DEFAULT_ROUTER),
                        help=f"the router's REST base URL (default: $WECROSS_ROUTER or {DEFAULT_ROUTER})")
    parser.add_argument("--ca", help="the network's CA certificate, for a router serving HTTPS")
    parser.add_argument("--cert", help="your client certificate chain (PEM); the router knows you by its CN")
    parser.add_argument("--key", help="the key of --cert (unencrypted PEM); resource operations are signed with it")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer (default 10)")
    parser.add_argument("--json", action="store_true", help="print the router's raw JSON instead of tables")
    parser.add_argument("-c", "--command", dest="commands", metavar="COMMANDS",
                        help='run these ";"-separated commands and exit (status 1 if any failed)')


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``wecross console`` as a subcommand of the ``wecross`` tool."""
    console = sub.add_parser("console", help="an interactive console over a router's REST API (wecross console -h)",
                             description=DESCRIPTION)
    add_arguments(console)
    console.set_defaults(func=run)


def _lines(stream: TextIO) -> Iterator[str]:
    for line in stream:
        yield line.rstrip("\n")


def run(args: argparse.Namespace, *, stdin: TextIO | None = None, stdout: TextIO | None = None,
        stderr: TextIO | None = None) -> int:
    """Run the console as ``args`` say; the exit status."""
    stdin = stdin or sys.stdin
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        client = WeCrossClient(args.router, ca=args.ca, cert=args.cert, key=args.key, timeout=args.timeout)
    except WeCrossError as exc:
        print(f"error: {exc.code}: {exc.message}", file=err)
        return 2
    session = Session(client, json_mode=args.json, out=out, err=err)
    try:
        if args.commands is not None:
            return session.run_lines([args.commands])
        if not stdin.isatty():
            return session.run_lines(_lines(stdin))
        return interactive(session)
    finally:
        client.close()


def interactive(session: Session) -> int:
    """The prompt: tab completion, history across runs, Ctrl-C abandons the line, Ctrl-D or ``quit`` leaves."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
    from prompt_toolkit.history import FileHistory, History, InMemoryHistory

    from wecross.console.completion import ConsoleCompleter

    path = history_path()
    history: History
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
        history = FileHistory(str(path))
    except OSError as exc:
        session.error("history", f"cannot use {path} ({exc.strerror}); history is kept for this session only")
        history = InMemoryHistory()
    _greet(session)
    prompt: PromptSession[str] = PromptSession(history=history, completer=ConsoleCompleter(session),
                                               complete_while_typing=False, auto_suggest=AutoSuggestFromHistory())
    while True:
        try:
            line = prompt.prompt(f"[{session.router_id or 'wecross'}]> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            return 0
        session.printed = False
        try:
            session.run_line(line)
        except Quit:
            return 0


def _greet(session: Session) -> None:
    """Learn the router's id (for the prompt) and its resources (for completion); say how to get help."""
    try:
        session.router_id = session.client.status().get("router_id")
        count = len(session.refresh())
    except WeCrossError as exc:
        session.error(exc.code, exc.message)
        print("the console runs anyway: status and refresh try the router again", file=session.out)
        return
    print(f"connected to {session.router_id} at {session.client.target.url('')}: {count} resources reachable. "
          "Type help, or press Tab.", file=session.out, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wecross console", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


__all__ = ["DEFAULT_ROUTER", "DESCRIPTION", "HISTORY_ENV", "add_arguments", "add_parser", "history_path",
           "interactive", "main", "run"]
