"""Everything that talks to the outside: AWS clients and their error map (``aws``), Bedrock models and
embedders (``bedrock``), local embeddings (``local``), candidates over Lambda, HTTP or a recorded replay,
S3 and GitHub, request signing and the feedback ledger. They implement ``evalgate.core.ports``. Floor 2:
imports ``contracts`` and ``core`` only.
"""
