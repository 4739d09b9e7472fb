"""The demo service behind the pipeline: a store assistant (its Lambda handler, answer logic, feature flags).

It is an example, not the product: it talks to ``evalgate`` only through ``evalgate.contracts`` and
``evalgate.core`` (and the adapters' AWS clients), so a team can replace this folder with its own service.
"""
