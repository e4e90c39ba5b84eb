"""quotaflow: one gateway in front of all of a team's LLM provider keys."""

__version__ = "0.1.0"
