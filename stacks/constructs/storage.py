"""Encrypted storage: one customer-managed KMS key, an access-log bucket, and a factory for data buckets.

Every bucket made here is private (block all public access, bucket-owner-enforced), SSL-only, encrypted, has
server access logs and a lifecycle rule. The access-log bucket uses SSE-S3 because S3 server access logging
cannot deliver to a KMS-encrypted bucket.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import Duration, RemovalPolicy, Stack, Tags
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.nag import acknowledge


@dataclass(frozen=True)
class BucketSpec:
    """Typed props for one data bucket."""

    purpose: str
    versioned: bool = False
    expire_days: int | None = None  # current objects expire (None = keep)
    noncurrent_days: int = 30  # noncurrent versions expire (versioned buckets)
    expire_prefixes: dict[str, int] = field(default_factory=dict)  # per-prefix expiry in days


class EncryptedStorage(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        description: str,
        log_retention_days: int,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        self._removal = removal_policy
        self.key = kms.Key(
            self,
            "Key",
            description=description,
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            enforce_ssl=True,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(log_retention_days))],
            removal_policy=removal_policy,
            auto_delete_objects=False,
        )
        acknowledge(
            self.access_logs,
            "AwsSolutions-S1",
            "This is the server-access-log destination bucket; logging it into itself would loop.",
        )

    def bucket(self, construct_id: str, spec: BucketSpec) -> s3.Bucket:
        rules: list[s3.LifecycleRule] = [
            s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)),
        ]
        if spec.expire_days is not None:
            rules.append(s3.LifecycleRule(id="expire-objects", expiration=Duration.days(spec.expire_days)))
        for prefix, days in spec.expire_prefixes.items():
            rules.append(
                s3.LifecycleRule(
                    id=f"expire-{prefix.strip('/').replace('/', '-')}", prefix=prefix, expiration=Duration.days(days)
                )
            )
        if spec.versioned:
            rules.append(
                s3.LifecycleRule(
                    id="expire-noncurrent", noncurrent_version_expiration=Duration.days(spec.noncurrent_days)
                )
            )
        bucket = s3.Bucket(
            self,
            construct_id,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=spec.versioned,
            lifecycle_rules=rules,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=f"{construct_id.lower()}/",
            removal_policy=self._removal,
        )
        Tags.of(bucket).add("evalgate:purpose", spec.purpose)
        return bucket

    def allow_log_encryption(self) -> None:
        """Let CloudWatch Logs use the key for this account's and Region's log groups (and nothing else)."""
        stack = Stack.of(self)
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsToEncryptLogGroups",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                    "kms:GenerateDataKey",
                    "kms:DescribeKey",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:*"
                        )
                    }
                },
            )
        )

    def grant_key(self, principal: iam.IGrantable, *, encrypt: bool = True, decrypt: bool = True) -> None:
        """Explicit KMS actions (no ``kms:*`` or ``kms:GenerateDataKey*`` wildcards)."""
        actions: list[str] = []
        if encrypt:
            actions += ["kms:GenerateDataKey"]
        if decrypt:
            actions += ["kms:Decrypt"]
        principal.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="UseDataKey" + ("Enc" if encrypt else "") + ("Dec" if decrypt else ""),
                actions=actions,
                resources=[self.key.key_arn],
            )
        )
