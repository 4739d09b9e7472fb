"""Scripts the pipeline runs inside CodeBuild (standard library + boto3 only)."""
