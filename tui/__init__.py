"""tokentop: GPU, CPU/RAM and live LLM streaming load on one screen."""

__version__ = "0.1.0"
