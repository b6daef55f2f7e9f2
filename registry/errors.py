"""The one exception the registry raises for a user's mistake; the CLI prints it as one line."""


class RegistryError(Exception):
    """Bad input or state (unknown version, bad config file, lock held...); nothing was changed."""
