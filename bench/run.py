"""Run the benchmark suite: ``python bench/run.py [--quick] [--out DIR]``.

The code lives in :mod:`sepconv.bench` (also ``python -m sepconv bench``).
"""

import sys

from sepconv.bench import main

if __name__ == "__main__":
    sys.exit(main("bench", sys.argv[1:]))
