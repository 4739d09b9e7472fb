"""``python -m evalgate.ci run|shard|merge|promote``."""

from evalgate.ci.gate_step import main

raise SystemExit(main())
