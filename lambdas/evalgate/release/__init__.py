"""What watches production and carries a verdict out: the deployment hooks, canary statistics (``canary``, with
the samples it compares read from CloudWatch by ``canary_samples``) and the live canary verdict, the online judge,
the shadow worker (``shadow``) and its report (``shadow_report``), the notifier (``notify``: ``events``,
``lookups``, ``compose``), tickets and pull-request verdicts. Floor 4: may import everything below
(``contracts``, ``core``, ``adapters``, ``reports``, ``engine``), never ``cli``, ``handlers`` or a demo service.
"""
