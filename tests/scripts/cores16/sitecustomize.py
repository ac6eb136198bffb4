"""Every Python process started with this folder on PYTHONPATH believes it has 16 cores, as a user's GPU box does:

    PYTHONPATH=tests/scripts/cores16 python -m pytest

(tokentop's worker counts follow os.cpu_count; nothing else may depend on it.)"""

import os

os.cpu_count = lambda: 16
