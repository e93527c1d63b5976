"""Pure logic: no database, no server, no subprocess (a temp dir at most)."""
