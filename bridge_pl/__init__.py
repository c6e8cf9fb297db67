"""bridge-pl: prepare language models for reinforcement learning with behavior injection (BRIDGE)."""

__version__ = "0.1.0"
