"""``python -m synadb.studio FILE``."""

from . import main

raise SystemExit(main())
