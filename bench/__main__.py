"""`python -m bench`: every bench, then the README's Performance table (see `bench.suite`)."""

from bench.suite import main

raise SystemExit(main())
