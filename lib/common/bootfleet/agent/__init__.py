"""The bootfleet agent (issue 22): a small in-memory OS that reports a machine's inventory and
writes an OS image to its disk. script.py is its /init; build.py makes its kernel + initramfs."""
