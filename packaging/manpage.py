"""Write heroku-audit-trail(1) in roff from the real argparse parser, so the page never drifts
from the command. Usage: python3 packaging/manpage.py OUT.1   (with the package importable)
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from heroku_audit_trail import __version__
from heroku_audit_trail.cli import EXAMPLES, build_parser
from heroku_audit_trail.commands import options


def roff(text: str) -> str:
    """Escape text for roff: backslashes, and a leading dot or quote on a line."""
    lines = []
    for line in text.replace("\\", "\\e").splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.append((name, child))
                found += [(f"{name} {sub}", grand) for sub, grand in subcommands(child)]
    return found


def manpage() -> str:
    # The state dir's default as a reader's machine has it, not the build machine's home.
    options.default_state_dir = lambda: Path("$XDG_STATE_HOME/heroku-audit-trail")
    parser = build_parser()
    out = [
        f'.TH HEROKU-AUDIT-TRAIL 1 "{date.today():%Y-%m-%d}" "heroku-audit-trail {__version__}"',
        ".SH NAME",
        "heroku-audit-trail \\- Heroku Enterprise audit trail as ECS JSON lines",
        ".SH SYNOPSIS",
        ".B heroku-audit-trail",
        "COMMAND [OPTIONS]",
        ".SH DESCRIPTION",
        roff(parser.description or ""),
        ".SH COMMANDS",
    ]
    for name, child in subcommands(parser):
        # The help begins with the usage: it is not written a second time.
        out += [".SS " + name, ".nf", roff(child.format_help()), ".fi"]
    out += [".SH EXAMPLES", ".nf", roff(EXAMPLES), ".fi"]
    out += [
        ".SH FILES",
        "Cursors, run records and backfill records are kept in --state-dir, by default "
        "$XDG_STATE_HOME/heroku-audit-trail (~/.local/state/heroku-audit-trail when "
        "XDG_STATE_HOME is unset).",
    ]
    out += [".SH SEE ALSO", "/usr/share/doc/heroku-audit-trail/README.md.gz and docs/"]
    return "\n".join(out) + "\n"


def main() -> int:
    target = Path(sys.argv[1])
    target.write_text(manpage())
    return 0


if __name__ == "__main__":
    sys.exit(main())
