"""The layer below everything: the data dir's layout, settings from the environment, the calendar.

Imports run one way: foundation ← simulator ← resources ← assets, sensors ← orchestration_defs
(tests/test_layers.py).
"""
