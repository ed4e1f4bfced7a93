"""Shared library of the step scripts, the model server and the monitor (travels into containers)."""
