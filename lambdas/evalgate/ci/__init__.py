"""The pipeline's driver inside CodeBuild (``evalgate ci run|shard|merge|promote``, ``gate_step``): runs the
``evalgate`` command, acts on its exit code (approve, review event, reject), keeps baselines, cache and history in
S3. An entry point (floor 5, like ``cli``): it may import any floor; nothing imports it.
"""
