"""python -m benchmarks.learning: see README.md beside this file."""

from .run import main

raise SystemExit(main())
