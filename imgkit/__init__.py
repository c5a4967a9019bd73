"""ImgKit's shared kernel: settings, ids, errors, logging and the `imgkit` command.

The feature packages (`streams`, `agents`, `index`, `api`, `schemas`, `imaging`) sit
beside this one at the top of the repository, so a newcomer finds a feature by its
folder name; this package holds only what every one of them needs.
"""

__version__ = "0.1.0"
