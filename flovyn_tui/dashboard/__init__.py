"""The Textual dashboard: `flovyn tui` and `flovyn demo`."""
