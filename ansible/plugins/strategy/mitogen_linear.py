"""Mitogen's linear strategy, under the name Ansible looks for on the kit's plugin path.

The local stack runs with it (`ANSIBLE_STRATEGY=mitogen_linear`, set by the Makefile and the
full-topology Molecule scenario): Mitogen keeps one Python interpreter per host for the
whole run instead of starting one per task, which makes a run that changes nothing about
three times faster on the stack's containers. Any other environment opts in the same way.
The `mitogen` package is pinned in requirements.txt.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
