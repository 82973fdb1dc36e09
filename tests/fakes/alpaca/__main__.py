"""``python -m tests.fakes.alpaca --port 8765 --latency-ms 50 --error-rate 0.1 --speed 60``"""

import sys

from tests.fakes.alpaca.standalone import main

if __name__ == "__main__":
    sys.exit(main())
