"""ssm-metarl: meta-reinforcement learning with state-space-model policies."""

__version__ = "0.1.0"
