"""What watches production and carries a verdict out: the deployment hooks, canary statistics and the live
canary verdict, the online judge, the shadow worker and report, the notifier, tickets and pull-request
verdicts. Floor 4: may import everything below (``contracts``, ``core``, ``adapters``, ``reports``,
``engine``), never ``cli``, ``handlers`` or a demo service.
"""
