"""One module per ``ripple`` subcommand; :mod:`ripple.cli` builds the parser and dispatches."""
