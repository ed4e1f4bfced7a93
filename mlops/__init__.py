"""The `mlops` command line: one module per command group in `mlops.commands`."""
