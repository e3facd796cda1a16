"""kit-reaper: the worker reaper for gunicorn (a port of the Perl "plack reaper").

- `kit_reaper.hooks`: gunicorn server hooks that keep each instance's scoreboard.
- `kit_reaper.reaper`: the loop that reads the scoreboards and kills or recycles workers.
- `kit_reaper.policy`: the decisions, as pure code.
"""

__version__ = "0.1.0"
