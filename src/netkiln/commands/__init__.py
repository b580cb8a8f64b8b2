"""One module per CLI command; each exposes `run(command, argv) -> exit code`."""
