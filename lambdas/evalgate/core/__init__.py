"""The pure evaluation model: cases and records (``models``), gate.toml (``config``), the golden set (``dataset``),
one input loader (``inputs``), metrics, statistics, the gate's rules (``gate``: thresholds, verdict ladder),
prompts, the knowledge lookup (``knowledge``), the ports adapters implement (``ports``), the one retry policy
(``retry``), the latency rule, masking and errors. Floor 0 (the ground): imports only
``evalgate.core``; never boto3, botocore, an adapter or anything above.
"""
