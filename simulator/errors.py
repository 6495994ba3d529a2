"""Errors the simulator raises for conditions a user can fix (the CLI prints them, exit code 2)."""


class SimulatorError(Exception):
    """A problem with the request or the data dir, with a message that says how to fix it."""


class StoreExistsError(SimulatorError):
    """The data dir already holds a store and `force` was not given."""


class StoreNotFoundError(SimulatorError):
    """The data dir holds no generated store (no simulator/store.json)."""
