"""The service's Bedrock guardrail, provisioned from ``guardrails/*.toml`` (``evalgate.engine.guardrail_spec``).

``AWS::Bedrock::Guardrail`` holds the working draft; ``AWS::Bedrock::GuardrailVersion`` is the immutable
version the service and the online judge use. The version's logical id and description carry the config's
fingerprint, so any change of the file creates a new version (and the old one is removed only after the stack
update, i.e. after the canary has moved all traffic to the Lambda version that uses the new one).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import aws_bedrock as bedrock
from constructs import Construct


class Guardrail(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, spec: Any, name: str) -> None:
        super().__init__(scope, construct_id)
        props = spec.cfn_properties()
        fingerprint = spec.fingerprint()
        self.resource = bedrock.CfnGuardrail(
            self,
            "Guardrail",
            name=name[:50],
            blocked_input_messaging=props["BlockedInputMessaging"],
            blocked_outputs_messaging=props["BlockedOutputsMessaging"],
        )
        for key, value in props.items():
            if key not in ("Name", "BlockedInputMessaging", "BlockedOutputsMessaging"):
                self.resource.add_property_override(key, value)
        self.version = bedrock.CfnGuardrailVersion(
            self,
            f"Version{fingerprint[:12]}",
            guardrail_identifier=self.resource.attr_guardrail_id,
            description=f"evalgate config {fingerprint[:16]}",
        )
        self.guardrail_id: str = self.resource.attr_guardrail_id
        self.guardrail_version: str = self.version.attr_version
        self.fingerprint = fingerprint
