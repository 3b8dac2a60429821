"""urpo-kit: one model trained as both player and referee in a single GRPO loop (URPO)."""

__version__ = "0.1.0"
