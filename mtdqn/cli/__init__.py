"""The `mtdqn` command line, generated from the config dataclasses by tyro.

The CLI only parses and calls the library.  Every user error — ours
(:class:`ConfigError`) or a parse error from tyro — is printed as one line
``error: ...`` on stderr with exit status 2; a run that diverges (non-finite
loss or Q-value) or a search none of whose trials completed exits 3, and a
failed write (disk full) or a run the machine cannot hold (memory, disk space:
:class:`InsufficientResources`) exits 1, each with one line too.  Nothing is
half-written because the library writes atomically.

Layout: ``commands.py`` holds each command's options (the dataclasses tyro
builds the CLI from), ``handlers.py`` what each command does and the table of
commands, ``entry.py`` parsing, the one-line errors and the JAX setup.
"""

from mtdqn.cli.entry import main

__all__ = ["main"]
