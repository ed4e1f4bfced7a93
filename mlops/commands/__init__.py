"""Command groups of the `mlops` CLI; each module exposes `register(subparsers)` and `ORDER`."""
