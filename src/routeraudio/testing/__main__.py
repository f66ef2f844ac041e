"""``python -m routeraudio.testing deepgram --port N``: same as ``routeraudio simulate``."""

from .cli import main

raise SystemExit(main())
