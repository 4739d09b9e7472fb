"""evalgate: score a GenAI change against a golden dataset and decide whether it may ship."""

__version__ = "0.1.0"
