"""The global options (--url, --token, --json, --yes), accepted anywhere on the line: each
subcommand takes them too, and a value given there wins over one given before it."""

from __future__ import annotations

import argparse


class Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake as one line (not the usage block), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"bootfleet: {message} (see: {self.prog} --help)\n")


def globals_parser(defaults: bool) -> argparse.ArgumentParser:
    """--url, --token, --json, --yes: on the top parser with defaults, on each subcommand
    without (argparse.SUPPRESS), so that one given after the subcommand is kept, not reset."""
    p = Parser(add_help=False)
    keep = {} if defaults else {"default": argparse.SUPPRESS}
    p.add_argument("--url", help="bootfleet's base URL (else BOOTFLEET_URL, else what serve wrote)",
                   **({"default": None} if defaults else keep))
    p.add_argument("--token", help="the admin token (else BOOTFLEET_ADMIN_TOKEN, else what serve wrote)",
                   **({"default": None} if defaults else keep))
    p.add_argument("--json", action="store_true", help="print JSON as the API answers it",
                   **({"default": False} if defaults else keep))
    p.add_argument("-y", "--yes", action="store_true", help="do not ask before deleting or changing many things",
                   **({"default": False} if defaults else keep))
    return p


class Sub:
    """Subcommands that all take the global options."""

    def __init__(self, parent: argparse.ArgumentParser, dest: str, metavar: str):
        self.common = globals_parser(defaults=False)
        self.actions = parent.add_subparsers(dest=dest, required=True, metavar=metavar)

    def add(self, name: str, help: str, **kwargs) -> argparse.ArgumentParser:
        return self.actions.add_parser(name, help=help, description=help, parents=[self.common], **kwargs)
