"""The service contract suite (tests/contract/service_suite.py) on the demo store assistant and on the example FAQ
desk (tests/example_service), a deliberately different service: the product reaches both the same way."""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar

import pytest

from tests.contract.service_suite import REPO, ServiceContract
from tests.fakes.bedrock_fake import BedrockFake

EXAMPLE = REPO / "tests" / "example_service"
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


class TestStoreAssistant(ServiceContract):
    HANDLER = "store_assistant.handler.handler"
    PROMPT_ID = "support/v1"

    @pytest.fixture
    def prepare(self, bedrock_fake: BedrockFake, monkeypatch: pytest.MonkeyPatch) -> Any:
        from store_assistant import flags

        monkeypatch.setattr(flags, "DEFAULT_CAPTURE_RATE", 1.0)  # the flag document's capture rate: every answer
        return bedrock_fake

    def flush(self, module: ModuleType) -> None:
        assert module.get_service().capture.flush(5)


class TestExampleFaqDesk(ServiceContract):
    HANDLER = "faq_desk.handler.handler"
    CODE_ROOT: ClassVar = EXAMPLE / "src"
    PROMPTS: ClassVar = EXAMPLE / "prompts"
    GOLDEN: ClassVar = EXAMPLE / "golden"
    PROMPT_ID = "faq/v1"
    MODEL_ID = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
    FEEDBACK = False  # no feedback route: the business-outcome alarm never sees data for it


@pytest.mark.parametrize("folder", [REPO / "lambdas" / "store_assistant", EXAMPLE / "src" / "faq_desk"])
def test_a_service_reaches_the_product_only_through_contracts_core_and_adapters(folder: Any) -> None:
    from tests.unit.test_layout import imports_of

    allowed = ("evalgate.contracts", "evalgate.core", "evalgate.adapters")
    product = sorted(
        f"{path.name} imports {name}"
        for path in folder.glob("*.py")
        for name in imports_of(path)
        if name.split(".")[0] in ("evalgate", "handlers") and not name.startswith(allowed)
    )
    assert product == []
