"""The `bootfleet` command: run the system, and operate it over its HTTP API.

    bootfleet serve                     the whole system on 127.0.0.1:8080
    bootfleet migrate                   apply database migrations
    bootfleet profile|deployment|node   list, get, create, update, delete
    bootfleet node import|unknown|adopt|script|events
    bootfleet status [DEPLOYMENT]       progress, failed and stuck nodes
    bootfleet watch DEPLOYMENT          the same, live, until it is done
    bootfleet events                    the event stream (--tail, --since, --follow)
    bootfleet images upload|list|rm     boot images in the configured storage
    bootfleet images build-ipxe-disk    the iPXE disk image VPC virtual servers boot
    bootfleet cleanup [--dry-run]       run cleanup now
    bootfleet dns reconcile|records     DNS records at the provider
    bootfleet doctor                    is everything in place?
    bootfleet token|audit|webhook       scoped API tokens, the audit log, signed webhooks
    bootfleet apply -f FILE | export    the fleet as a file: make the system match it, or write it

Operator commands find the server and its admin token as cli/config.py says: --url and
--token, else BOOTFLEET_URL and BOOTFLEET_ADMIN_TOKEN, else what `bootfleet serve` wrote
to the user's config directory. Every failure is one line on stderr and a non-zero exit.

This module is the entry point; parser.py holds the arguments, and the commands live in
resources.py (profile, deployment, node), commands.py (status, watch, events, dns,
cleanup), fleet.py (import, unknown machines, doctor), images.py and serve.py.
"""

from __future__ import annotations

import sys

import argcomplete

from bootfleet.cli.client import CliError
from bootfleet.cli.parser import build_parser
from bootfleet.errors import BootfleetError
from bootfleet.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argcomplete.autocomplete(parser)  # completion: eval "$(register-python-argcomplete bootfleet)"
    args = parser.parse_args(argv)
    try:
        settings = get_settings()  # once; every command is given it
        args.func(args, settings)
    except (CliError, BootfleetError) as e:
        print(f"bootfleet: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `bootfleet events | head`
        sys.stderr.close()
        return 0
    except OSError as e:
        print(f"bootfleet: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
