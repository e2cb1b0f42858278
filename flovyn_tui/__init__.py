"""The `flovyn` command and the terminal dashboard."""
