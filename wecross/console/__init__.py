"""The WeCross console (docs/console.md): a shell over one router's REST API, for people and for scripts.

``wecross console --router URL`` opens a prompt with tab completion of commands, iPaths and method names; ``-c`` and
piped stdin run commands without a terminal. The commands are plain functions over the SDK's blocking client
(:mod:`wecross.console.commands`), rendered as aligned tables (:mod:`wecross.console.render`) or as raw JSON.
prompt_toolkit is imported only for the interactive prompt, so scripted use does not need a terminal library.
"""

from __future__ import annotations

from wecross.console.app import add_parser, main, run
from wecross.console.commands import COMMANDS, Command, ConsoleError, Outcome, Session

__all__ = ["COMMANDS", "Command", "ConsoleError", "Outcome", "Session", "add_parser", "main", "run"]
