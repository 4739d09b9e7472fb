"""EvalGate infrastructure: typed settings, one stack per deployable unit, one construct per capability.

The stacks share contracts and rules with the code they ship (``evalgate.contracts``, ``evalgate.core``, ...), so
the library folder is put on the import path here, once.
"""

import sys
from pathlib import Path

_LAMBDAS = str(Path(__file__).resolve().parents[1] / "lambdas")
if _LAMBDAS not in sys.path:
    sys.path.insert(0, _LAMBDAS)
