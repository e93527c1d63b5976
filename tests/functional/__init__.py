"""Real PostgreSQL, the SDKs against the local fakes (tests/fakes), a real BIND, moto's S3,
the functions as test clients, `bootfleet serve` as a process, the dashboard in Chromium."""
