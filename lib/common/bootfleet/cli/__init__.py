"""The `bootfleet` command: run the system locally (serve), and operate it over its HTTP API."""
