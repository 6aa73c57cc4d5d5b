"""stop: sink-token-aware pruning of visual tokens for Video LLMs."""

__version__ = "0.1.0"
