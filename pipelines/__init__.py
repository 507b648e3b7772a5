"""One ``run(config)`` per command; the CLI parses options into a config and calls it."""
