"""The nouns of the `flovyn` command, one module per area; each exports COMMANDS."""
