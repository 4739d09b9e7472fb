"""Thin Lambda entry points. Each module parses its event, calls one ``evalgate`` function and responds.

Every module here is a deployed function (``evalgate.engine.change_type.product_handlers``) whose code asset is
its import closure, so this package holds nothing they would all ship: what they share (EMF publishing, the
tracer, Powertools Idempotency, the SQS batch check) lives in ``evalgate.adapters.lambda_runtime``, where a
service's own handler can use it too; the hooks' once-per-execution guard is ``evalgate.release.deploy_hooks``.
"""
