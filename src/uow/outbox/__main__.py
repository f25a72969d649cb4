"""`python -m uow.outbox`: run a relay, or look after the outbox table."""

from __future__ import annotations

import sys

from uow.outbox._cli import main

if __name__ == "__main__":
    sys.exit(main())
