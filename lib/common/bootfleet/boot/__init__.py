"""What a node is answered: its iPXE script (answer), its config (node_config), its progress reports."""
