"""Idempotency records for Lambdas that SQS or async invocations may run twice for one event.

One on-demand DynamoDB table in the layout Powertools Idempotency expects (partition key ``id``, TTL attribute
``expiration``), point-in-time recovery on; :meth:`IdempotencyTable.attach` gives a function the table's name
(``IDEMPOTENCY_TABLE``) and only the four item calls the persistence layer makes, on this table only.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

ITEM_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]


class IdempotencyTable(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.TableV2(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            time_to_live_attribute="expiration",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=RemovalPolicy.DESTROY,  # records expire within days; nothing to keep
        )

    def attach(self, fn: lambda_.Function) -> None:
        fn.add_environment("IDEMPOTENCY_TABLE", self.table.table_name)
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="IdempotencyRecords",
                actions=ITEM_ACTIONS,
                resources=[self.table.table_arn],
            )
        )
