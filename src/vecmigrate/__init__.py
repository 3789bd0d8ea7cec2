"""vecmigrate: move vector databases between engines and prove nothing was lost."""

__version__ = "0.1.0"
