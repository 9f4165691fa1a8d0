"""May import: nothing (the command line is stoxbar.scripts.cli).
"""

