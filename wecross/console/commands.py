"""The console's commands, as plain functions over a blocking SDK client: no terminal, no prompt_toolkit.

A :class:`Session` holds the client, the output mode and what completion needs (the resources last read from the
router, the transaction ids seen). ``session.run_line("status; listResources z")`` runs commands the way the prompt,
``-c`` and piped stdin all do: each command prints a table (or, in JSON mode, the router's JSON), a failure prints
``error: <code>: <message>`` on the error stream and the next command still runs. Nothing here lets a traceback
reach the user: router and SDK failures arrive as ``WeCrossError`` with a stable code, the console's own (usage,
unknown command, unclosed quote) as :class:`ConsoleError`, and anything unforeseen is reported as ``internal``.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from wecross.console import parse, render
from wecross.sdk import WeCrossClient, WeCrossError
from wecross.sdk.models import ResourceInfo

#: States a 2PC transaction record can be in (``listTransactions [state]``), for completion and checking.
TX_STATES = ("started", "committing", "committed", "rolling_back", "rolled_back")
#: At most this many headers for one ``headers <chain> <from>..<to>``: each is one request.
MAX_HEADER_RANGE = 100


class ConsoleError(Exception):
    """A failure the console detects itself, reported like a router error: ``error: <code>: <message>``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class Quit(Exception):
    """``quit`` / ``exit``: stop reading commands."""


@dataclass(frozen=True)
class Outcome:
    """What a command produced: ``data`` (printed as JSON in JSON mode) and its human view."""

    data: Any
    view: Callable[[Any], str] | None = None

    def text(self, as_json: bool) -> str | None:
        if as_json:
            return None if self.data is None else render.pretty_json(self.data)
        if self.view is None:
            return None if self.data is None else render.cell(self.data)
        return self.view(self.data)


Handler = Callable[["Session", list[str]], Outcome]


@dataclass(frozen=True)
class Command:
    """One command: its name, argument synopsis, what it does, and how its arguments complete.

    ``params`` names the kind of each positional argument, for completion (see wecross/console/completion.py); a
    kind ending in ``*`` repeats for every further argument.
    """

    name: str
    usage: str
    summary: str
    handler: Handler
    params: tuple[str, ...] = ()
    min_args: int = 0
    max_args: int | None = 0
    details: str = ""
    aliases: tuple[str, ...] = ()

    def synopsis(self) -> str:
        return f"{self.name} {self.usage}".rstrip()


@dataclass
class Session:
    """One console session against one router (see the module docstring)."""

    client: WeCrossClient
    json_mode: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    resources: list[ResourceInfo] | None = None
    tx_ids: list[str] = field(default_factory=list)
    router_id: str | None = None
    #: Something was printed since the last prompt: the next table is set off by a blank line.
    printed: bool = False

    # --- state completion uses --------------------------------------------------------------------------------------

    def refresh(self) -> list[ResourceInfo]:
        """Read every resource reachable from the router (completion of iPaths and methods relies on it)."""
        self.resources = list(self.client.resources())
        return self.resources

    def known_resources(self) -> list[ResourceInfo]:
        return self.resources or []

    def resource(self, ipath: str) -> ResourceInfo | None:
        for info in self.known_resources():
            if info.get("ipath") == ipath:
                return info
        return None

    def remember_tx(self, tx_id: Any) -> None:
        if isinstance(tx_id, str) and tx_id:
            if tx_id in self.tx_ids:
                self.tx_ids.remove(tx_id)
            self.tx_ids.insert(0, tx_id)
            del self.tx_ids[50:]

    # --- running ----------------------------------------------------------------------------------------------------

    def execute(self, words: Sequence[str]) -> Outcome:
        """Run one command (its words, name first); raises ConsoleError / WeCrossError / Quit."""
        name, args = words[0], list(words[1:])
        command = lookup(name)
        if command is None:
            close = difflib.get_close_matches(name, sorted(COMMANDS), n=1)
            hint = f"; did you mean {close[0]}?" if close else "; type help for the list"
            raise ConsoleError("unknown_command", f"no command {name!r}{hint}")
        if len(args) < command.min_args or (command.max_args is not None and len(args) > command.max_args):
            raise ConsoleError("usage", command.synopsis())
        return command.handler(self, args)

    def run(self, words: Sequence[str]) -> bool:
        """Run one command and print what it gives; False if it failed (the failure is printed, never raised)."""
        try:
            outcome = self.execute(words)
        except Quit:
            raise
        except (WeCrossError, ConsoleError) as exc:
            self.error(exc.code, exc.message)
            return False
        except KeyboardInterrupt:
            self.error("interrupted", f"{words[0]} was interrupted; a write may or may not have happened")
            return False
        except Exception as exc:  # the console must keep running whatever a command hits
            self.error("internal", f"{type(exc).__name__}: {exc}")
            return False
        text = outcome.text(self.json_mode)
        if text is not None:
            if self.printed and not self.json_mode:
                print(file=self.out)
            print(text, file=self.out, flush=True)
            self.printed = True
        return True

    def run_line(self, line: str) -> bool:
        """Run every ``;``-separated command of a line; False if any failed. Quit propagates."""
        if line.lstrip().startswith("#"):
            return True
        try:
            commands = parse.split_commands(line)
        except parse.ParseError as exc:
            self.error("parse", str(exc))
            return False
        ok = True
        for words in commands:
            ok = self.run(words) and ok
        return ok

    def run_lines(self, lines: Iterable[str]) -> int:
        """Non-interactive use (``-c``, piped stdin): every line in turn; exit status 1 if any command failed."""
        ok = True
        try:
            for line in lines:
                ok = self.run_line(line) and ok
        except Quit:
            pass
        return 0 if ok else 1

    def error(self, code: str, message: str) -> None:
        print(f"error: {code}: {message}", file=self.err, flush=True)


# --- argument helpers -------------------------------------------------------------------------------------------------


def _values(words: Iterable[str]) -> list[Any]:
    return [parse.value(w) for w in words]


def _int(word: str, what: str) -> int:
    try:
        number = int(word, 10)
    except ValueError:
        raise ConsoleError("bad_args", f"{what} must be a whole number, got {word!r}") from None
    if number < 0:
        raise ConsoleError("bad_args", f"{what} must be 0 or more, got {number}")
    return number


# --- handlers ---------------------------------------------------------------------------------------------------------


def _help(session: Session, args: list[str]) -> Outcome:
    if args:
        command = lookup(args[0])
        if command is None:
            raise ConsoleError("unknown_command", f"no command {args[0]!r}; type help for the list")
        text = f"{command.synopsis()}\n  {command.summary}"
        if command.details:
            text += "\n\n" + "\n".join("  " + line if line else "" for line in command.details.splitlines())
        if command.aliases:
            text += f"\n\n  also: {', '.join(command.aliases)}"
        return Outcome({"command": command.name, "usage": command.synopsis(), "summary": command.summary},
                       lambda _: text)
    rows = [[c.synopsis(), c.summary] for c in COMMANDS.values()]
    tail = ("\nArguments are split like a shell; each is read as JSON when it parses (10, true, [1,2], "
            "'{\"a\": 1}'), else as a string. Quote JSON-looking strings as JSON: '\"10\"'.\n"
            "Separate commands with ';'. Tab completes commands, iPaths and method names.")
    return Outcome([{"usage": u, "summary": s} for u, s in rows],
                   lambda _: render.table(["command", "what it does"], rows) + "\n" + tail)


def _list_resources(session: Session, args: list[str]) -> Outcome:
    zone: str | None = args[0] if args else None
    chain: str | None = args[1] if len(args) > 1 else None
    if zone is not None and chain is None and zone.count(".") == 1:
        zone, chain = zone.split(".")
    rows = session.client.resources(zone=zone or None, chain=chain or None)
    if zone is None and chain is None:
        session.resources = list(rows)
    return Outcome(rows, render.resources)


def _find(session: Session, ipath: str) -> ResourceInfo:
    info = session.resource(ipath)
    if info is None:
        session.refresh()
        info = session.resource(ipath)
    if info is None:
        where = f" from {session.router_id}" if session.router_id else ""
        raise ConsoleError("unknown_resource", f"no resource {ipath} is reachable{where} (listResources shows them)")
    return info


def _detail(session: Session, args: list[str]) -> Outcome:
    return Outcome(_find(session, args[0]), render.detail)


def _call(session: Session, args: list[str]) -> Outcome:
    return Outcome(session.client.call(args[0], args[1], *_values(args[2:])), render.operation)


def _send(session: Session, args: list[str]) -> Outcome:
    return Outcome(session.client.send_transaction(args[0], args[1], *_values(args[2:])), render.operation)


def _get_data(session: Session, args: list[str]) -> Outcome:
    return Outcome(session.client.get_data(args[0], args[1]), render.operation)


def _set_data(session: Session, args: list[str]) -> Outcome:
    return Outcome(session.client.set_data(args[0], args[1], parse.value(args[2])), render.operation)


def _peers(session: Session, args: list[str]) -> Outcome:
    return Outcome(session.client.peers(), render.peers)


def _routes(session: Session, args: list[str]) -> Outcome:
    return Outcome(session.client.routes(), render.routes)


def _chains(session: Session, args: list[str]) -> Outcome:
    return Outcome(session.client.chains(), render.chains)


def _headers(session: Session, args: list[str]) -> Outcome:
    chain, spec = args
    if chain.count(".") != 1 or not all(chain.split(".")):
        raise ConsoleError("bad_args", f"a chain is zone.chain, got {chain!r}")
    if ".." in spec:
        low_text, high_text = spec.split("..", 1)
        low, high = _int(low_text, "the first block"), _int(high_text, "the last block")
        if high < low:
            raise ConsoleError("bad_args", f"the range {spec} is empty")
        if high - low + 1 > MAX_HEADER_RANGE:
            raise ConsoleError("bad_args", f"at most {MAX_HEADER_RANGE} headers at a time")
        return Outcome([session.client.header(chain, n) for n in range(low, high + 1)], render.headers)
    return Outcome(session.client.header(chain, _int(spec, "the block number")), render.header)


def _status(session: Session, args: list[str]) -> Outcome:
    data = session.client.status()
    if isinstance(data.get("router_id"), str):
        session.router_id = data["router_id"]
    return Outcome(data, render.status)


def _start_tx(session: Session, args: list[str]) -> Outcome:
    record = session.client.start_tx(args or None)
    session.remember_tx(record.get("tx_id"))
    return Outcome(record, render.tx_record)


def _exec_tx(session: Session, args: list[str]) -> Outcome:
    session.remember_tx(args[0])
    return Outcome(session.client.exec_tx(args[0], args[1], args[2], *_values(args[3:])), render.tx_step)


def _commit_tx(session: Session, args: list[str]) -> Outcome:
    return Outcome(session.client.commit_tx(args[0]), render.tx_record)


def _rollback_tx(session: Session, args: list[str]) -> Outcome:
    return Outcome(session.client.rollback_tx(args[0], " ".join(args[1:]) or None), render.tx_record)


def _get_tx(session: Session, args: list[str]) -> Outcome:
    record = session.client.get_tx(args[0])
    session.remember_tx(record.get("tx_id"))
    return Outcome(record, render.tx_record)


def _list_tx(session: Session, args: list[str]) -> Outcome:
    state = args[0] if args else None
    if state is not None and state not in TX_STATES:
        raise ConsoleError("bad_args", f"state must be one of {', '.join(TX_STATES)}, got {state!r}")
    limit = _int(args[1], "the limit") if len(args) > 1 else None
    data = session.client.list_tx(state=state, limit=limit)
    for row in reversed(data.get("transactions") or []):
        session.remember_tx(row.get("tx_id"))
    return Outcome(data, render.tx_list)


#: ``audit`` filters as the console takes them (``name=value``), in the order help lists them.
AUDIT_FILTERS = ("initiator", "ipath", "interface", "outcome", "since", "until", "after", "limit")


def _whoami(session: Session, args: list[str]) -> Outcome:
    return Outcome(session.client.whoami(), render.identity)


def _audit(session: Session, args: list[str]) -> Outcome:
    filters: dict[str, Any] = {}
    for word in args:
        name, sep, value = word.partition("=")
        if not sep or name not in AUDIT_FILTERS:
            raise ConsoleError("bad_args", f"audit takes name=value filters ({', '.join(AUDIT_FILTERS)}), "
                                           f"got {word[:80]!r}")
        if name in filters:
            raise ConsoleError("bad_args", f"audit filter {name} given twice")
        if name in ("after", "limit"):
            filters[name] = _int(value, name)
        elif name in ("since", "until"):
            try:
                filters[name] = float(value)
            except ValueError:
                raise ConsoleError("bad_args", f"{name} must be seconds since the epoch, got {value[:40]!r}") from None
        else:
            filters[name] = value
    return Outcome(session.client.audit(**filters), render.audit)


def _add_peer(session: Session, args: list[str]) -> Outcome:
    return Outcome(session.client.add_peer(args[0], args[1] if len(args) > 1 else None), render.peer_change)


def _remove_peer(session: Session, args: list[str]) -> Outcome:
    return Outcome(session.client.remove_peer(args[0]), render.peer_change)


def _list_accounts(session: Session, args: list[str]) -> Outcome:
    user = args[0] if args and args[0] != "*" else None
    return Outcome(session.client.accounts(user, args[1] if len(args) > 1 else None), render.accounts)


def _create_account(session: Session, args: list[str]) -> Outcome:
    return Outcome(session.client.create_account(args[0], args[1]), render.account_change("account of"))


def _remove_account(session: Session, args: list[str]) -> Outcome:
    return Outcome(session.client.remove_account(args[0], args[1]), render.account_change("removed the account of"))


def _refresh(session: Session, args: list[str]) -> Outcome:
    rows = session.refresh()
    return Outcome({"resources": len(rows)}, lambda d: f"{d['resources']} resources known")


def _json(session: Session, args: list[str]) -> Outcome:
    if args:
        choice = args[0].lower()
        if choice not in ("on", "off"):
            raise ConsoleError("usage", ":json [on|off]")
        session.json_mode = choice == "on"
    else:
        session.json_mode = not session.json_mode
    return Outcome({"json": session.json_mode}, lambda d: f"json output {'on' if d['json'] else 'off'}")


def _quit(session: Session, args: list[str]) -> Outcome:
    raise Quit


def _cmd(name: str, usage: str, summary: str, handler: Handler, params: tuple[str, ...] = (), *,
         min_args: int | None = None, max_args: int | None = -1, details: str = "",
         aliases: tuple[str, ...] = ()) -> Command:
    """A command whose argument counts default to "its params" (``max_args=None``: no upper bound). A param
    written ``?kind`` is optional, ``kind*`` repeats."""
    required = sum(1 for p in params if not p.startswith("?") and not p.endswith("*"))
    return Command(name, usage, summary, handler, tuple(p.lstrip("?") for p in params),
                   required if min_args is None else min_args,
                   len(params) if max_args == -1 else max_args,
                   details, aliases)


_LIST: list[Command] = [
    _cmd("help", "[command]", "list the commands, or explain one", _help, ("?command",)),
    _cmd("status", "", "this router's id, zones, version, uptime and counters", _status),
    _cmd("peers", "", "the peers this router knows, with link state and round-trip times", _peers),
    _cmd("routes", "", "the routing table: next hop, cost and path to every chain and router", _routes),
    _cmd("chains", "", "chains served here, header chains trusted for remote chains, verification counters",
         _chains),
    _cmd("listResources", "[zone] [chain]", "the resources reachable from this router, optionally filtered",
         _list_resources, ("?zone", "?chain_name"), details="listResources z.one is listResources z one."),
    _cmd("detail", "<ipath>", "one resource: kind, where it is served, its route and methods", _detail,
         ("ipath",)),
    _cmd("call", "<ipath> <method> [args...]", "run a read-only method (the answer says if its proof was checked)",
         _call, ("ipath", "method.read", "arg*"), max_args=None,
         details="examples:\n  call z.one.asset balanceOf alice\n  call z.one.hello get greeting"),
    _cmd("sendTransaction", "<ipath> <method> [args...]", "run a write method as a transaction on its chain",
         _send, ("ipath", "method.write", "arg*"), max_args=None,
         details="examples:\n  sendTransaction z.one.asset transfer bob 10\n"
                 "  sendTransaction z.one.hello set greeting '\"10\"'"),
    _cmd("getData", "<ipath> <key>", "read a key of a resource", _get_data, ("ipath", "key")),
    _cmd("setData", "<ipath> <key> <value>", "write a key of a resource (the value is read as JSON)", _set_data,
         ("ipath", "key", "value"), details="examples:\n  setData z.one.hello k '{\"any\": [\"json\", 1]}'"),
    _cmd("headers", "<zone.chain> <n | from..to>", "block header n (or headers from..to) and why it is trusted",
         _headers, ("chain", "block")),
    _cmd("startTransaction", "[ipath...]", "start a 2PC transaction over these resources (none: any)", _start_tx,
         ("ipath*",), max_args=None),
    _cmd("execTransaction", "<tx_id> <ipath> <method> [args...]",
         "run one step tentatively inside a transaction (what it touches stays locked)", _exec_tx,
         ("tx_id", "ipath", "method.write", "arg*"), max_args=None),
    _cmd("commitTransaction", "<tx_id>", "commit a transaction on every participant", _commit_tx, ("tx_id",)),
    _cmd("rollbackTransaction", "<tx_id> [reason...]", "roll a transaction back and release its locks",
         _rollback_tx, ("tx_id", "?arg*"), max_args=None),
    _cmd("getTransaction", "<tx_id>", "a transaction's record: state, steps and outcomes", _get_tx, ("tx_id",)),
    _cmd("listTransactions", "[state] [limit]", "the coordinator's transactions, newest first", _list_tx,
         ("?tx_state", "?limit")),
    _cmd("whoami", "", "who this router takes you for: name, organisation, roles", _whoami),
    _cmd("audit", "[name=value...]", "records of the router's audit trail, oldest first (auditors, admins)", _audit,
         ("audit_filter*",), max_args=None,
         details="filters: " + ", ".join(AUDIT_FILTERS) + "\nexamples:\n  audit initiator=alice outcome=forbidden\n"
                 "  audit ipath=payment.bank-a since=1700000000 limit=20\n  audit after=100   (the next page)"),
    _cmd("addPeer", "<host:port> [router_id]", "dial a new peer now and keep it (admins)", _add_peer,
         ("address", "?router_id")),
    _cmd("removePeer", "<router_id | host:port>", "stop dialling a peer and close its links (admins)", _remove_peer,
         ("peer",)),
    _cmd("listAccounts", "[user|*] [zone.chain]", "users' chain accounts in this router's keystore (admins)",
         _list_accounts, ("?user", "?chain"),
         details="examples:\n  listAccounts\n  listAccounts alice\n  listAccounts * bank-a.evm"),
    _cmd("createAccount", "<user> <zone.chain>", "create a user's account on a chain, or show the existing one "
         "(admins)", _create_account, ("user", "chain")),
    _cmd("removeAccount", "<user> <zone.chain>", "forget a user's account on a chain, its key included (admins)",
         _remove_account, ("user", "chain")),
    _cmd("refresh", "", "read the resources again (for completion of iPaths and methods)", _refresh),
    _cmd(":json", "[on|off]", "print raw JSON (for scripts) instead of tables; no argument toggles", _json,
         ("?onoff",)),
    _cmd("quit", "", "leave the console", _quit, aliases=("exit",)),
]

#: Every command by its canonical name, in the order help lists them.
COMMANDS: dict[str, Command] = {c.name: c for c in _LIST}
_BY_LOWER: dict[str, Command] = {alias.lower(): c for c in _LIST for alias in (c.name, *c.aliases)}


def lookup(name: str) -> Command | None:
    """The command for a name or alias, case-insensitively (``listresources`` works too)."""
    return _BY_LOWER.get(name.lower())


def names() -> list[str]:
    """Every name completion offers: commands and aliases."""
    return [*COMMANDS, *(a for c in _LIST for a in c.aliases)]


__all__ = ["AUDIT_FILTERS", "COMMANDS", "TX_STATES", "Command", "ConsoleError", "Outcome", "Quit", "Session",
           "lookup", "names"]
