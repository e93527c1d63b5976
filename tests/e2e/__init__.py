"""End-to-end tests: real iPXE firmware in QEMU against the running system."""
