"""An example service, deliberately unlike the demo store assistant: an FAQ desk.

It answers from the best-matching knowledge entries (two at most) with one non-streaming Bedrock ``Converse`` call (no
feature flags, no variants, no shadow mode, no feedback route), declines without calling the model when no entry
matches, and captures every user answer synchronously. It meets the product only through the service contract
(``evalgate.contracts.service``), the telemetry names and the adapters' AWS clients and signing check; the stacks
ship it unchanged when cdk.json names it (``serviceCodeRoot``, ``serviceHandler``, ``promptsDir``, ``goldenDir``).
"""
